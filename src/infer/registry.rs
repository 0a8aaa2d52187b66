//! The op → shape rule table. One line per op; a new op is a function in `ops/` and a line here.

use super::ops::{elementwise, indexing, nn, reduce, shape};
use super::{InferError, Info, Shapes};
use crate::onnx::NodeProto;

/// A shape rule: the outputs of one node from what is known about its inputs. Called only for a
/// standard-domain node with at least one output.
pub type Rule = fn(&NodeProto, &Shapes) -> Result<Vec<Info>, InferError>;

/// Every op with a rule, sorted by op type (the lookup is a binary search).
static RULES: &[(&str, Rule)] = &[
    ("Abs", elementwise::unary),
    ("Add", elementwise::arithmetic),
    ("And", elementwise::comparison),
    ("ArgMax", reduce::arg_reduce),
    ("ArgMin", reduce::arg_reduce),
    ("AveragePool", nn::pool),
    ("BatchNormalization", elementwise::unary),
    ("BitShift", elementwise::arithmetic),
    ("Cast", elementwise::cast),
    ("Ceil", elementwise::unary),
    ("Clip", elementwise::unary),
    ("Concat", indexing::concat),
    ("Constant", shape::constant),
    ("ConstantOfShape", shape::constant_of_shape),
    ("Conv", nn::conv),
    ("ConvTranspose", nn::conv_transpose),
    ("DequantizeLinear", elementwise::dequantize_linear),
    ("Div", elementwise::arithmetic),
    ("Dropout", elementwise::dropout),
    ("Elu", elementwise::unary),
    ("Equal", elementwise::comparison),
    ("Erf", elementwise::unary),
    ("Exp", elementwise::unary),
    ("Expand", shape::expand),
    ("Flatten", shape::flatten),
    ("Floor", elementwise::unary),
    ("Gather", indexing::gather),
    ("GatherND", indexing::gather_nd),
    ("Gelu", elementwise::unary),
    ("Gemm", reduce::gemm),
    ("GlobalAveragePool", nn::global_pool),
    ("GlobalMaxPool", nn::global_pool),
    ("Greater", elementwise::comparison),
    ("GreaterOrEqual", elementwise::comparison),
    ("HardSigmoid", elementwise::unary),
    ("HardSwish", elementwise::unary),
    ("Identity", elementwise::identity),
    ("InstanceNormalization", elementwise::unary),
    ("LeakyRelu", elementwise::unary),
    ("Less", elementwise::comparison),
    ("LessOrEqual", elementwise::comparison),
    ("Log", elementwise::unary),
    ("LogSoftmax", elementwise::unary),
    ("LpNormalization", elementwise::unary),
    ("LpPool", nn::pool),
    ("MatMul", reduce::mat_mul),
    ("Max", elementwise::arithmetic),
    ("MaxPool", nn::pool),
    ("Min", elementwise::arithmetic),
    ("Mish", elementwise::unary),
    ("Mod", elementwise::arithmetic),
    ("Mul", elementwise::arithmetic),
    ("Neg", elementwise::neg),
    ("NonMaxSuppression", reduce::non_max_suppression),
    ("NonZero", indexing::non_zero),
    ("Not", elementwise::unary),
    ("Or", elementwise::comparison),
    ("PRelu", elementwise::unary),
    ("Pow", elementwise::arithmetic),
    ("QuantizeLinear", elementwise::quantize_linear),
    ("Range", shape::range),
    ("Reciprocal", elementwise::unary),
    ("ReduceMax", reduce::reduce),
    ("ReduceMean", reduce::reduce),
    ("ReduceMin", reduce::reduce),
    ("ReduceProd", reduce::reduce),
    ("ReduceSum", reduce::reduce),
    ("Relu", elementwise::unary),
    ("Reshape", shape::reshape),
    ("Resize", nn::resize),
    ("Round", elementwise::unary),
    ("ScatterElements", indexing::scatter_elements),
    ("ScatterND", indexing::scatter_nd),
    ("Selu", elementwise::unary),
    ("Shape", shape::shape),
    ("Sigmoid", elementwise::unary),
    ("Sign", elementwise::unary),
    ("Slice", indexing::slice),
    ("Softmax", elementwise::unary),
    ("Softplus", elementwise::unary),
    ("Split", indexing::split),
    ("Sqrt", elementwise::unary),
    ("Squeeze", shape::squeeze),
    ("Sub", elementwise::arithmetic),
    ("Sum", elementwise::arithmetic),
    ("Tanh", elementwise::unary),
    ("Tile", shape::tile),
    ("TopK", reduce::top_k),
    ("Transpose", indexing::transpose),
    ("Unsqueeze", shape::unsqueeze),
    ("Upsample", nn::upsample),
    ("Where", elementwise::where_),
    ("Xor", elementwise::comparison),
];

/// The rule for `op`, if there is one.
pub fn rule(op: &str) -> Option<Rule> {
    RULES
        .binary_search_by(|(name, _)| (*name).cmp(op))
        .ok()
        .map(|i| RULES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_sorted_without_duplicates() {
        for w in RULES.windows(2) {
            assert!(w[0].0 < w[1].0, "{} then {}", w[0].0, w[1].0);
        }
    }

    /// Every op of the single `match` that `infer_node` was before the registry.
    #[test]
    fn every_op_of_the_old_match_has_a_rule() {
        let old = [
            "Constant",
            "Relu",
            "Sigmoid",
            "Exp",
            "Clip",
            "Neg",
            "Sqrt",
            "Softmax",
            "Identity",
            "Tanh",
            "LeakyRelu",
            "HardSigmoid",
            "HardSwish",
            "Log",
            "Abs",
            "Floor",
            "Ceil",
            "Erf",
            "Reciprocal",
            "Dropout",
            "Not",
            "Round",
            "Sign",
            "LogSoftmax",
            "Elu",
            "Selu",
            "Softplus",
            "Mish",
            "Gelu",
            "PRelu",
            "BatchNormalization",
            "InstanceNormalization",
            "LpNormalization",
            "QuantizeLinear",
            "DequantizeLinear",
            "Cast",
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Pow",
            "Equal",
            "Greater",
            "Less",
            "And",
            "Or",
            "GreaterOrEqual",
            "LessOrEqual",
            "Mod",
            "Max",
            "Min",
            "Sum",
            "Where",
            "Xor",
            "BitShift",
            "Conv",
            "ConvTranspose",
            "MaxPool",
            "AveragePool",
            "LpPool",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "Resize",
            "Upsample",
            "Concat",
            "Reshape",
            "Flatten",
            "Transpose",
            "Shape",
            "Gather",
            "Unsqueeze",
            "Squeeze",
            "Slice",
            "Split",
            "ConstantOfShape",
            "Expand",
            "Tile",
            "Range",
            "MatMul",
            "Gemm",
            "ScatterND",
            "ScatterElements",
            "GatherND",
            "NonMaxSuppression",
            "NonZero",
            "TopK",
            "ReduceSum",
            "ReduceMax",
            "ReduceMin",
            "ReduceMean",
            "ReduceProd",
            "ArgMax",
            "ArgMin",
        ];
        assert_eq!(old.len(), 93);
        for op in old {
            assert!(rule(op).is_some(), "no rule for {op}");
        }
        assert_eq!(
            RULES.len(),
            old.len(),
            "a rule for an op the old match did not handle"
        );
    }

    #[test]
    fn an_unknown_op_has_no_rule() {
        assert!(rule("If").is_none());
        assert!(rule("").is_none());
        assert!(rule("relu").is_none(), "op types are case-sensitive");
    }
}
