//! The tokenizer of a GGUF model, built from the GGUF's own metadata (candle reads the
//! weights but not the tokenizer): GPT-2 style byte-level BPE (`tokenizer.ggml.model =
//! "gpt2"`, SmolLM2's and Qwen's), with the vocabulary, the merges and the control tokens
//! (`token_type` 3) as special tokens. And the ChatML prompt those models are trained on.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::models::bpe::BPE;
use tokenizers::{AddedToken, Tokenizer};

use super::EmbeddedError;
use crate::llm::{ChatMessage, Role};

/// GGUF's token type for control tokens (`<|im_start|>`, `<|endoftext|>`).
const CONTROL: i32 = 3;

/// The strings of an array value.
fn strings(content: &Content, key: &str) -> Result<Vec<String>, EmbeddedError> {
    match content.metadata.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(EmbeddedError::Format(format!("{key} holds a non-string"))),
            })
            .collect(),
        _ => Err(EmbeddedError::Format(format!("no {key} in the model file"))),
    }
}

/// The model's tokenizer, and the id of each of its tokens.
pub fn from_gguf(content: &Content) -> Result<(Tokenizer, HashMap<String, u32>), EmbeddedError> {
    match content.metadata.get("tokenizer.ggml.model") {
        Some(Value::String(m)) if m == "gpt2" => {}
        other => {
            return Err(EmbeddedError::Format(format!(
                "tokenizer {other:?} is not supported (byte-level BPE, \"gpt2\", is)"
            )))
        }
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings(content, "tokenizer.ggml.merges")?
        .iter()
        .filter_map(|m| m.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::I32(t) => *t,
                _ => 1,
            })
            .collect(),
        _ => Vec::new(),
    };
    let vocab: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::new(vocab.clone().into_iter().collect(), merges);
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(
        tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, true, true),
    ));
    tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == CONTROL)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| EmbeddedError::Format(format!("special tokens: {e}")))?;
    Ok((tokenizer, vocab))
}

/// The ChatML prompt of `messages`: each as `<|im_start|>role\ntext<|im_end|>\n`, then the
/// start of the assistant's answer; with `continue_final`, the final (assistant) message is
/// left open, so the model goes on with it.
pub fn chatml(messages: &[ChatMessage], continue_final: bool) -> String {
    let mut out = String::new();
    let last = messages.len().saturating_sub(1);
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        out.push_str(&m.content);
        if continue_final && i == last && m.role == Role::Assistant {
            return out;
        }
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_opens_the_answer_or_leaves_the_last_one_open() {
        let msgs = vec![
            ChatMessage::new(Role::System, "Be brief."),
            ChatMessage::new(Role::User, "Hi"),
        ];
        assert_eq!(
            chatml(&msgs, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let mut cont = msgs.clone();
        cont.push(ChatMessage::new(Role::Assistant, "Hello, I"));
        assert!(chatml(&cont, true).ends_with("<|im_start|>assistant\nHello, I"));
        assert!(chatml(&cont, false).ends_with("Hello, I<|im_end|>\n<|im_start|>assistant\n"));
    }
}
