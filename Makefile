# hybridwbc: every target installs what it needs into .venv first.
PY     ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXPERIMENTS := all_hem wbc5 pbc8 all_pbs

.PHONY: scale sweep mlflow-server peers install run test test-fast lint package-check experiments ui report check-data \
        bench clean help tables table-wbc table-all-hem \
        table-all-pbs table-repeats pretrain domain-shift all-hem-pretrained all-pbs-pretrained \
        $(EXPERIMENTS)

help:
	@echo "make run          install, then run the main experiment (all_hem; synthetic data if none is found)"
	@echo "make test         install, then run the test suite"
	@echo "make lint         install, then check the code with ruff (rules in pyproject.toml)"
	@echo "make experiments  run all_hem, wbc5, pbc8 and all_pbs"
	@echo "make tables       rerun what is missing, then write experiments/<name>/results.md from MLflow"
	@echo "make table-repeats  the cascade variants on 5-fold CV of wbc5 and pbc8 (12-epoch CNNs; mean ± sd, per split)"
	@echo "make pretrain     train the CNN backbone on every PBC image; weights in pretrained/ (backbone.weights=<file>)"
	@echo "make domain-shift PBC -> BCCD (another lab): every method x normalisation x augmentation, few-shot arm"
	@echo "make all-hem-pretrained  all_hem with the PBC-pretrained backbone (frozen, fine-tuned) beside scratch"
	@echo "make all-pbs-pretrained  all_pbs (B-ALL smear fields) with the PBC-pretrained backbone beside scratch"
	@echo "make ui           serve the MLflow UI on http://127.0.0.1:5000"
	@echo "make report       methods paragraph, result tables (Markdown, LaTeX) and checklist from mlflow.db (EXPERIMENT=...)"
	@echo "make check-data   report what ../shared/data (or HYBRIDWBC_DATA) holds"
	@echo "make bench        run the benchmark scripts"
	@echo "make peers        install the optional peers bench/peers.py compares against (cp_measure)"
	@echo "make scale        install the optional extra 'scale' (PySpark, the PostgreSQL driver)"
	@echo "make sweep        5 seeds x 2 methods of wbc5 in parallel (joblib launcher), then the seeds table"
	@echo "make mlflow-server  an MLflow server on PostgreSQL at http://127.0.0.1:5000 (Ctrl-C stops it)"

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The optional peers of bench/peers.py (pyproject extra `peers`), pinned in constraints.txt. --no-deps: centrosome
# declares pillow<12, which would downgrade our pinned pillow; everything else they need is already pinned.
peers: install
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt cp-measure centrosome mahotas deprecation

# Scale-out extras (Spark batch scoring, the MLflow server's PostgreSQL driver); CI installs them.
$(VENV)/.scale: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,scale]'
	touch $@

scale: $(VENV)/.scale

# A ready sweep: seeds x methods in parallel processes (hydra-joblib-launcher; each job's inner workers capped
# at cores / jobs), nested under one MLflow parent run; then the mean ± sd table experiments/wbc5/seeds.md.
SWEEP_ARGS ?= +experiment=wbc5 seed=0,1,2,3,4 classifier=svm,cascade data.max_per_class=60
sweep: install
	$(BIN)/python -m hybridwbc.run -m $(SWEEP_ARGS) hydra/launcher=joblib hydra.launcher.n_jobs=2 progress=false
	$(BIN)/python -m hybridwbc.tables --seeds wbc5

# A shared tracking server: PostgreSQL (Debian's postgresql package) + `mlflow server`, on loopback.
mlflow-server: scale
	$(BIN)/python -m hybridwbc.scale.server --dir .mlflow-server --port 5000

# A backbone pretrained on blood cells, offline: every development PBC image (8 classes), weights + SHA-256 + the
# list of images it saw in pretrained/, the 8-class CNN as an MLflow model. Reruns are instant (trained-model cache).
pretrain: install
	$(BIN)/python -m hybridwbc.run +experiment=pretrain

pretrained/pbc8_compact96_acq.weights.h5: | install
	$(BIN)/python -m hybridwbc.run +experiment=pretrain augmentation=acquisition pretrain.name=pbc8_compact96_acq

domain-shift: pretrain pretrained/pbc8_compact96_acq.weights.h5
	$(BIN)/python -m hybridwbc.run +experiment=domain_shift

all-hem-pretrained: pretrain
	$(BIN)/python -m hybridwbc.run +experiment=all_hem_pretrained

all-pbs-pretrained: pretrain
	$(BIN)/python -m hybridwbc.run +experiment=all_pbs_pretrained

run: install
	$(BIN)/python -m hybridwbc.run +experiment=all_hem

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not realdata"

lint: install
	$(BIN)/ruff check hybridwbc tests bench

# `pip install .` (not editable) into a fresh venv, then run the main experiment from another folder:
# the configs must ship inside the package (no real data there: it runs on the synthetic set and says so).
package-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q -c constraints.txt . ; \
	cd "$$tmp" && env -u HYBRIDWBC_DATA "$$tmp/venv/bin/python" -m hybridwbc.run +experiment=all_hem \
	  tracking.uri=sqlite:///$$tmp/mlflow.db progress=false data.synthetic.n_per_class=12 eval.n_bootstrap=20 \
	  > "$$tmp/log" 2>&1 || { cat "$$tmp/log"; exit 1; }; \
	grep -q "BUILT-IN SYNTHETIC" "$$tmp/log" || { cat "$$tmp/log"; echo "package-check: no synthetic banner"; exit 1; }; \
	echo "package-check: pip install . runs +experiment=all_hem from another folder"

$(EXPERIMENTS): install
	$(BIN)/python -m hybridwbc.run +experiment=$@

experiments: $(EXPERIMENTS)

TABLE = $(BIN)/python -m hybridwbc.tables --ensure --uri sqlite:///mlflow.db --out experiments

table-wbc: install
	$(TABLE) wbc5_compare pbc8_compare

table-all-hem: install
	$(TABLE) all_hem_compare

table-all-pbs: install
	$(TABLE) all_pbs_compare

table-repeats: install
	$(TABLE) wbc5_cascades_cv pbc8_cascades_cv

tables: table-wbc table-all-hem table-all-pbs
	$(BIN)/python -m hybridwbc.tables --timing --uri sqlite:///mlflow.db --out experiments \
		wbc5_compare pbc8_compare all_hem_compare all_pbs_compare

ui: install
	@echo "MLflow UI: open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the model-training view)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# A paper-ready report (methods paragraph, tables in Markdown and LaTeX, CLAIM / TRIPOD+AI checklist) of the run
# `make tables` would publish: make report [EXPERIMENT=all_hem] [RUN=<run id>] -> reports/<experiment>/
EXPERIMENT ?= all_hem
report: install
	$(BIN)/python -m hybridwbc.report $(if $(RUN),--run "$(RUN)",$(EXPERIMENT)) --uri sqlite:///$(CURDIR)/mlflow.db --out reports

check-data: install
	$(BIN)/python -m hybridwbc.data check $${HYBRIDWBC_DATA:-../shared/data}

bench: install
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf outputs multirun .cache .pytest_cache

# --- use a trained model: register it, serve it (loopback only) ---
PORT ?= 5001
.PHONY: register serve

register: install
	@test -n "$(RUN)" || { echo "usage: make register RUN=<MLflow run id> [NAME=<registered model name>]"; exit 2; }
	$(BIN)/python -m hybridwbc.serving register --run "$(RUN)" --tracking-uri sqlite:///$(CURDIR)/mlflow.db $(if $(NAME),--name "$(NAME)",)

serve: install
	@test -n "$(MODEL)" || { echo "usage: make serve MODEL=<pyfunc dir | models:/<name>/<version>> [PORT=5001]"; exit 2; }
	PATH="$(CURDIR)/$(BIN):$$PATH" MLFLOW_TRACKING_URI=sqlite:///$(CURDIR)/mlflow.db \
	  $(BIN)/mlflow models serve -m "$(MODEL)" --env-manager local -h 127.0.0.1 -p $(PORT)
