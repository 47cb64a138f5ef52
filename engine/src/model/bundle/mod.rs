//! Model bundles (`latentd-bundle/1`) and the ONNX Runtime backend that runs them.

pub mod onnx;
