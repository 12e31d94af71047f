"""Everything Keras: the only package that imports TensorFlow.

:mod:`~hybridwbc.cnn.backbones` (registry and config-time checks, no TensorFlow),
:mod:`~hybridwbc.cnn.build` (backbone builders, in-model preprocessing, model identity),
:mod:`~hybridwbc.cnn.images` (decode/resize, ``tf.data`` streams, augmentation),
:mod:`~hybridwbc.cnn.embed` (cached embedding extraction), :mod:`~hybridwbc.cnn.training`
(validation split, optimiser, callbacks, BatchNorm re-estimation, trained-model cache),
:mod:`~hybridwbc.cnn.estimators` (``CNNClassifier``) and :mod:`~hybridwbc.cnn.heads` (``EmbeddingClassifier``).
Importing the package imports no TensorFlow; the estimators import it when they train or predict.
"""
