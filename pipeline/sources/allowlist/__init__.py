"""What an untrusted model may hold: explicit lists of pure computation, one module a kind of model.

`ops`: TensorFlow ops, for every graph and every function of a graph's library (TF1 GraphDef and meta graph,
SavedModel). `keras`: Keras 3 and tf_keras classes, and the TensorFlow functions a `TFOpLambda` layer may call.
Anything not listed is refused untrusted, naming the element and where it sits. A leaf: the standard library and
protobuf messages only; knows nothing of recipes or runs.
"""
