//! Splitting a long reply at a platform's length limit, on paragraph, line or word
//! boundaries, keeping Markdown code fences balanced in every piece.

/// Splits `text` into pieces of at most `max_chars` characters. A code fence open at a cut is
/// closed at the end of that piece and reopened (with its language tag) at the start of the next.
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    // Room for the reopened fence line and the closing "\n```" must stay available.
    let max_chars = max_chars.max(16);
    let mut out = Vec::new();
    let mut rest = text;
    let mut open_fence: Option<String> = None;
    loop {
        let prefix = open_fence
            .as_ref()
            .map(|f| format!("{f}\n"))
            .unwrap_or_default();
        let prefix_len = prefix.chars().count();
        if prefix_len + rest.chars().count() <= max_chars {
            if !rest.is_empty() || out.is_empty() {
                out.push(format!("{prefix}{rest}"));
            }
            return out;
        }
        let budget = max_chars.saturating_sub(prefix_len + 4).max(1);
        let hard = byte_index_of_char(rest, budget);
        let window = &rest[..hard];
        let (cut, skip) = if let Some(i) = window.rfind("\n\n").filter(|&i| i > hard / 3) {
            (i, 2)
        } else if let Some(i) = window.rfind('\n').filter(|&i| i > hard / 3) {
            (i, 1)
        } else if let Some(i) = window.rfind(' ').filter(|&i| i > hard / 3) {
            (i, 1)
        } else {
            (hard, 0)
        };
        let piece = &rest[..cut];
        rest = &rest[cut + skip..];
        let mut chunk = format!("{prefix}{piece}");
        open_fence = fence_state_after(open_fence, piece);
        if open_fence.is_some() {
            chunk.push_str("\n```");
        }
        out.push(chunk);
    }
}

/// Byte index of the `n`th character, or the end of the string.
fn byte_index_of_char(s: &str, n: usize) -> usize {
    s.char_indices().nth(n).map(|(i, _)| i).unwrap_or(s.len())
}

/// Tracks whether a fence is open after `piece`, starting from `open`.
fn fence_state_after(mut open: Option<String>, piece: &str) -> Option<String> {
    for line in piece.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            open = match open {
                Some(_) => None,
                None => Some(t.trim_end().to_string()),
            };
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fences_balanced(s: &str) -> bool {
        s.lines()
            .filter(|l| l.trim_start().starts_with("```"))
            .count()
            % 2
            == 0
    }

    #[test]
    fn short_text_is_one_piece() {
        assert_eq!(split_message("hello", 2000), vec!["hello".to_string()]);
        assert_eq!(split_message("", 2000), vec![String::new()]);
    }

    #[test]
    fn pieces_respect_limit_and_keep_all_words() {
        let text = (0..500)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let pieces = split_message(&text, 100);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(p.chars().count() <= 100, "{} chars", p.chars().count());
        }
        assert_eq!(pieces.join(" "), text);
    }

    #[test]
    fn code_fences_stay_balanced() {
        let code = (0..80)
            .map(|i| format!("let x{i} = {i};"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("Intro paragraph.\n\n```rust\n{code}\n```\n\nOutro.");
        let pieces = split_message(&text, 200);
        assert!(pieces.len() > 3);
        for p in &pieces {
            assert!(p.chars().count() <= 200);
            assert!(fences_balanced(p), "unbalanced piece: {p}");
        }
        assert!(pieces[2].starts_with("```rust\n"));
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let text = "é".repeat(1000);
        let pieces = split_message(&text, 64);
        assert!(pieces.iter().all(|p| p.chars().count() <= 64));
        assert_eq!(pieces.concat(), text);
    }
}
