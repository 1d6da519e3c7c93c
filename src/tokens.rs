//! Token counting for prompt budgets. tiktoken's cl100k is the default estimator; it is
//! compiled in, so it works offline.

use std::sync::{Arc, OnceLock};

use tiktoken_rs::CoreBPE;

/// Tokens a chat message costs beyond its text (role markers, separators).
pub const MESSAGE_OVERHEAD: usize = 4;
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

impl TokenCounter for Tiktoken {
    fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_grow_with_text() {
        let t = Tiktoken::cl100k();
        assert_eq!(t.count(""), 0);
        let one = t.count("hello world");
        assert!(one >= 2);
        assert!(t.count(&"hello world ".repeat(100)) > 100);
    }
}
