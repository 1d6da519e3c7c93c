//! Token counting for prompt budgets. tiktoken's cl100k is the default estimator; it is
//! compiled in, so it works offline, but for Qwen- and DeepSeek-family models it is only an
//! estimate. [`Tiktoken::from_file`] loads a model's exact byte-level BPE: a `*.tiktoken` ranks
//! file (Qwen ships `qwen.tiktoken`) or a Hugging Face `tokenizer.json` with a byte-level BPE
//! model whose ids follow merge order (Qwen2/2.5, DeepSeek-R1 distills, Llama 3, GPT-2).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use tiktoken_rs::CoreBPE;

/// The pre-tokenization pattern of Qwen (1, 2, 2.5) and the DeepSeek-R1 Qwen distills.
pub const QWEN_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The GPT-2 pattern, used by byte-level tokenizers that declare no split regex.
const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Why a tokenizer file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file could not be read.
    #[error("cannot read tokenizer {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a supported tokenizer.
    #[error("tokenizer {path} is not supported: {reason}")]
    Unsupported {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Tokens a chat message costs beyond its text: ChatML's `<|im_start|>`, role, newline,
/// `<|im_end|>`, newline.
pub const MESSAGE_OVERHEAD: usize = 5;
/// Tokens every request costs beyond its messages (assistant priming).
pub const REQUEST_OVERHEAD: usize = 3;

/// Counts tokens the way the serving model would (or as close as the back-end can).
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text`.
    fn count(&self, text: &str) -> usize;
}

/// cl100k_base from tiktoken-rs.
#[derive(Clone)]
pub struct Tiktoken {
    bpe: Arc<CoreBPE>,
}

impl Tiktoken {
    /// The shared cl100k encoder; built once per process (it takes ~100 ms).
    pub fn cl100k() -> Self {
        static BPE: OnceLock<Arc<CoreBPE>> = OnceLock::new();
        let bpe = BPE
            .get_or_init(|| {
                Arc::new(tiktoken_rs::cl100k_base().expect("cl100k tables are compiled in"))
            })
            .clone();
        Self { bpe }
    }
}

impl Tiktoken {
    /// Token ids of `text` (no special tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// Loads an exact tokenizer: `*.tiktoken` (base64 token, rank per line; Qwen pattern) or a
    /// Hugging Face `tokenizer.json` (byte-level BPE).
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Read {
            path: shown.clone(),
            source,
        })?;
        let unsupported = |reason: String| TokenizerError::Unsupported {
            path: shown.clone(),
            reason,
        };
        let (ranks, pattern) = if text.trim_start().starts_with('{') {
            ranks_from_tokenizer_json(&text).map_err(unsupported)?
        } else {
            (
                ranks_from_tiktoken(&text).map_err(unsupported)?,
                QWEN_PATTERN.to_string(),
            )
        };
        let mut seen = rustc_hash::FxHashSet::default();
        if !ranks.values().all(|r| seen.insert(*r)) {
            return Err(unsupported("two tokens share one rank".into()));
        }
        let bpe = CoreBPE::new(ranks, Default::default(), &pattern)
            .map_err(|e| unsupported(format!("bad pattern: {e}")))?;
        Ok(Self { bpe: Arc::new(bpe) })
    }
}

type Ranks = rustc_hash::FxHashMap<Vec<u8>, tiktoken_rs::Rank>;

fn ranks_from_tiktoken(text: &str) -> Result<Ranks, String> {
    let mut ranks = Ranks::default();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let (tok, rank) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {}: expected `base64 rank`", n + 1))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(tok)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        let rank = rank
            .trim()
            .parse()
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        ranks.insert(bytes, rank);
    }
    if ranks.is_empty() {
        return Err("no tokens".into());
    }
    Ok(ranks)
}

/// GPT-2's byte-to-printable-character table, inverted.
fn byte_decoder() -> rustc_hash::FxHashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .map(|(b, c)| (char::from_u32(c).expect("valid code point"), b as u8))
        .collect()
}

fn ranks_from_tokenizer_json(text: &str) -> Result<(Ranks, String), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let model = &v["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(format!("model type {} is not BPE", model["type"]));
    }
    let vocab = model["vocab"].as_object().ok_or("no model.vocab")?;
    let dec = byte_decoder();
    let mut ranks = Ranks::default();
    for (tok, id) in vocab {
        let bytes: Option<Vec<u8>> = tok.chars().map(|c| dec.get(&c).copied()).collect();
        let bytes = bytes.ok_or_else(|| format!("token {tok:?} is not byte-level"))?;
        let id = id.as_u64().ok_or("non-numeric id")?;
        ranks.insert(bytes, id as tiktoken_rs::Rank);
    }
    let pattern = find_split_regex(&v["pre_tokenizer"]).unwrap_or_else(|| GPT2_PATTERN.to_string());
    Ok((ranks, pattern))
}

fn find_split_regex(pre: &serde_json::Value) -> Option<String> {
    if pre["type"] == "Split" {
        return pre["pattern"]["Regex"].as_str().map(str::to_string);
    }
    pre["pretokenizers"]
        .as_array()?
        .iter()
        .find_map(find_split_regex)
}

impl TokenCounter for Tiktoken {
    fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a ranks file for a tiny byte-level vocabulary: all 256 bytes, then merges.
    fn tiny_vocab(merges: &[&str]) -> Vec<(Vec<u8>, u32)> {
        let mut v: Vec<(Vec<u8>, u32)> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
        for (i, m) in merges.iter().enumerate() {
            v.push((m.as_bytes().to_vec(), 256 + i as u32));
        }
        v
    }

    #[test]
    fn tiktoken_and_tokenizer_json_files_agree() {
        let vocab = tiny_vocab(&["he", "ll", "hell", "hello", " w", " wo"]);
        let dir = tempfile::tempdir().unwrap();
        let tt = dir.path().join("tiny.tiktoken");
        let lines: Vec<String> = vocab
            .iter()
            .map(|(b, r)| {
                format!(
                    "{} {r}",
                    base64::engine::general_purpose::STANDARD.encode(b)
                )
            })
            .collect();
        std::fs::write(&tt, lines.join("\n")).unwrap();
        // The same vocabulary as a tokenizer.json, tokens in GPT-2's printable byte form.
        let enc: rustc_hash::FxHashMap<u8, char> =
            byte_decoder().into_iter().map(|(c, b)| (b, c)).collect();
        let json_vocab: serde_json::Map<String, serde_json::Value> = vocab
            .iter()
            .map(|(b, r)| {
                (
                    b.iter().map(|x| enc[x]).collect::<String>(),
                    serde_json::json!(r),
                )
            })
            .collect();
        let tj = dir.path().join("tokenizer.json");
        let doc = serde_json::json!({
            "model": {"type": "BPE", "vocab": json_vocab, "merges": []},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN_PATTERN}, "behavior": "Isolated"},
                {"type": "ByteLevel", "use_regex": false}
            ]}
        });
        std::fs::write(&tj, doc.to_string()).unwrap();
        let a = Tiktoken::from_file(&tt).unwrap();
        let b = Tiktoken::from_file(&tj).unwrap();
        // "hello" is one token, " wo" one, "rld" three bytes.
        assert_eq!(a.count("hello world"), 5);
        for text in ["hello world", "héllo wörld", "", "a\n\nb  c"] {
            assert_eq!(a.count(text), b.count(text), "{text:?}");
        }
    }

    #[test]
    fn bad_tokenizer_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tiktoken");
        std::fs::write(&p, "not base64!! x").unwrap();
        assert!(matches!(
            Tiktoken::from_file(&p),
            Err(TokenizerError::Unsupported { .. })
        ));
        std::fs::write(&p, "YQ== 1\nYg== 1").unwrap();
        assert!(Tiktoken::from_file(&p).is_err(), "duplicate ranks");
        let j = dir.path().join("tokenizer.json");
        std::fs::write(&j, r#"{"model":{"type":"Unigram","vocab":[]}}"#).unwrap();
        assert!(Tiktoken::from_file(&j).is_err());
        assert!(matches!(
            Tiktoken::from_file(&dir.path().join("missing.json")),
            Err(TokenizerError::Read { .. })
        ));
    }

    #[test]
    fn counts_grow_with_text() {
        let t = Tiktoken::cl100k();
        assert_eq!(t.count(""), 0);
        let one = t.count("hello world");
        assert!(one >= 2);
        assert!(t.count(&"hello world ".repeat(100)) > 100);
    }
}
