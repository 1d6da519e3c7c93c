//! Unit and property tests of the continuation merge.

use proptest::prelude::*;
use unicode_segmentation::UnicodeSegmentation;

use super::*;

/// The answer after a round continuing `prev` streamed `chunks`.
fn merged(prev: &str, chunks: &[&str]) -> String {
    let mut m = Merge::new(prev);
    let mut out = prev.to_string();
    for c in chunks {
        out.push_str(&m.push(c));
    }
    out.push_str(&m.finish());
    out
}

/// The same, streamed one character at a time; also returns what was appended after each
/// character (to check that nothing shown is taken back or repeated).
fn merged_by_char(prev: &str, cont: &str) -> (String, Vec<String>) {
    let mut m = Merge::new(prev);
    let mut out = prev.to_string();
    let mut steps = Vec::new();
    for c in cont.chars() {
        let piece = m.push(&c.to_string());
        out.push_str(&piece);
        steps.push(out.clone());
    }
    out.push_str(&m.finish());
    (out, steps)
}

/// The sentence keys of `text` that occur more than once.
fn repeated_sentences(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    text.split_sentence_bounds()
        .map(key)
        .filter(|k| repeatable(k))
        .filter(|k| !seen.insert(k.clone()))
        .collect()
}

fn assert_no_instruction(text: &str) {
    let lower = text.to_lowercase();
    for phrase in [
        "previous reply",
        "length limit",
        "cut off by",
        "exactly where it stopped",
        "continue it",
        "already written",
        "no preamble",
    ] {
        assert!(
            !lower.contains(phrase),
            "instruction echo {phrase:?} in {text:?}"
        );
    }
}

const ANSWER: &str = "A billing service issues invoices to customers. It records every payment \
against the invoice it settles. Finally, it reminds customers of overdue invoices.";

#[test]
fn overlap_at_the_end_is_skipped() {
    assert_eq!(
        merged(
            "The quick brown fox",
            &[" brown fox jumps", " over the lazy dog."]
        ),
        "The quick brown fox jumps over the lazy dog."
    );
    assert_eq!(merged("abc", &["def"]), "abcdef");
    // Too short to be a repeat: "a " could be a coincidence.
    assert_eq!(merged("this is a", &["a b"]), "this is aa b");
    assert_eq!(
        merged("Grüße aus der Straße", &["der Straße und mehr."]),
        "Grüße aus der Straße und mehr."
    );
    // Case and whitespace do not hide an overlap.
    assert_eq!(
        merged(
            "It records every\npayment",
            &["every  Payment against the invoice."]
        ),
        "It records every\npayment against the invoice."
    );
}

#[test]
fn a_plain_continuation_passes_through() {
    let cut = &ANSWER[..60];
    assert_eq!(merged(cut, &[&ANSWER[60..]]), ANSWER);
    let (by_char, _) = merged_by_char(cut, &ANSWER[60..]);
    assert_eq!(by_char, ANSWER);
}

#[test]
fn a_full_restart_adds_only_what_follows_the_cut() {
    for cut in [10, 47, 48, 60, 120] {
        let prev = &ANSWER[..cut];
        assert_eq!(merged(prev, &[ANSWER]), ANSWER, "cut {cut}");
        let (by_char, steps) = merged_by_char(prev, ANSWER);
        assert_eq!(by_char, ANSWER, "cut {cut}");
        // Nothing of the replay is ever shown: every step extends the answer by new text.
        for s in &steps {
            assert!(ANSWER.starts_with(s.as_str()), "cut {cut}: showed {s:?}");
        }
    }
}

#[test]
fn a_restart_after_a_preamble_drops_the_preamble() {
    let prev = &ANSWER[..60];
    for preamble in [
        "Sure! Here is the complete answer: ",
        "Here is the completed response:\n\n",
        "Certainly.\n",
        "Okay, here's the full answer:\n",
        "Sure!\n\n",
        "Continuing from where I left off:\n",
    ] {
        let cont = format!("{preamble}{ANSWER}");
        assert_eq!(merged(prev, &[&cont]), ANSWER, "{preamble:?}");
        assert_eq!(merged_by_char(prev, &cont).0, ANSWER, "{preamble:?}");
    }
}

#[test]
fn an_opener_before_new_text_is_kept_and_an_announcement_is_not() {
    // "Here are the steps:" is the answer going on; no restart follows it.
    assert_eq!(
        merged(
            "Set it up in two steps. ",
            &["Here are the steps:\n1. Install it."]
        ),
        "Set it up in two steps. Here are the steps:\n1. Install it."
    );
    assert_eq!(
        merged("The deadline is", &["Sure, continuing: in May."]),
        "The deadline is in May."
    );
}

#[test]
fn a_restart_partway_adds_only_what_follows_the_cut() {
    // The round starts over from the second sentence.
    let prev = &ANSWER[..70];
    let from_second = &ANSWER[48..];
    assert_eq!(merged(prev, &[from_second]), ANSWER);
    // …from the sentence the cut is in.
    let prev = &ANSWER[..100];
    assert_eq!(merged(prev, &[&ANSWER[48..]]), ANSWER);
}

#[test]
fn a_restart_that_drifts_keeps_only_new_sentences() {
    let prev = "Invoices go out monthly. Payments are matched to invoices. Reminders";
    let cont = "Invoices go out monthly. Payments are matched to invoices. Overdue accounts get \
reminders. Reports go to finance.";
    let out = merged(prev, &[cont]);
    assert_eq!(
        out,
        "Invoices go out monthly. Payments are matched to invoices. Reminders Overdue \
accounts get reminders. Reports go to finance."
    );
    assert!(repeated_sentences(&out).is_empty(), "{out}");
}

#[test]
fn the_instruction_echoed_verbatim_with_a_prefix_or_in_part_is_dropped() {
    let prev = "The capital of France is";
    let rest = " Paris. It lies on the Seine.";
    let expected = "The capital of France is Paris. It lies on the Seine.";
    for echo in [
        format!("{CONTINUE_PROMPT}\n\n"),
        format!("Here is the completed response: {CONTINUE_PROMPT}\n"),
        "Your previous reply was cut off by the length limit. ".to_string(),
        "Continue it exactly where it stopped:".to_string(),
        "Sure! Continue it exactly where it stopped: do not repeat anything. ".to_string(),
        "Your previous reply was cut off by the length limit. Continue it exactly where it \
stopped. "
            .to_string(),
    ] {
        let cont = format!("{echo}{rest}");
        let out = merged(prev, &[&cont]);
        assert_no_instruction(&out);
        assert_eq!(
            out.split_whitespace().collect::<Vec<_>>().join(" "),
            expected,
            "{echo:?}"
        );
        let (by_char, steps) = merged_by_char(prev, &cont);
        assert_eq!(by_char, out, "{echo:?}");
        for s in steps {
            assert_no_instruction(&s);
        }
    }
}

#[test]
fn an_echo_cut_by_the_limit_mid_word_is_dropped() {
    // A 16-token round that only echoes: nothing reaches the answer.
    let prev = "The capital of France is";
    let out = merged(
        prev,
        &["Here is the completed response: Your previous reply was cut off by the len"],
    );
    assert_eq!(out, prev);
}

#[test]
fn an_echo_after_the_answer_is_cut_out() {
    let out = merged(
        "The capital of France is",
        &[" Paris. Your previous reply was cut off by the length limit. It lies on the Seine."],
    );
    assert_no_instruction(&out);
    assert_eq!(out, "The capital of France is Paris. It lies on the Seine.");
}

#[test]
fn a_round_that_only_repeats_adds_nothing() {
    let prev = &ANSWER[..60];
    assert_eq!(merged(prev, &[prev]), prev);
    assert_eq!(merged(prev, &["Sure! ", prev]), prev);
    // A restart that stops before the cut.
    assert_eq!(merged(prev, &[&ANSWER[..48]]), prev);
}

#[test]
fn repeated_sentences_in_the_body_are_dropped_but_the_first_round_is_kept() {
    // The first round repeats itself; that is the model's text and stays.
    let prev = "Yes, it works. Yes, it works. Then";
    let out = merged(prev, &[" it stops. Yes, it works. It restarts."]);
    assert_eq!(
        out,
        "Yes, it works. Yes, it works. Then it stops. It restarts."
    );
}

#[test]
fn an_announcement_mid_round_goes_only_with_a_restart() {
    let prev = "It is due in May. ";
    // Before new text it stays.
    assert_eq!(
        merged(prev, &["To continue, click Next. Then pay."]),
        "It is due in May. To continue, click Next. Then pay."
    );
    // At the end of the round, a sentence of its own stays; a lead-in to nothing goes.
    assert_eq!(
        merged(prev, &["Then pay. To continue, click Next."]),
        "It is due in May. Then pay. To continue, click Next."
    );
    assert_eq!(
        merged(prev, &["Then pay. Here is the complete answer:"]).trim_end(),
        "It is due in May. Then pay."
    );
    // Before a repeat it goes with the repeat.
    assert_eq!(
        merged(
            prev,
            &["Then pay. Here is the complete answer: It is due in May. Then pay."]
        )
        .trim_end(),
        "It is due in May. Then pay."
    );
}

#[test]
fn a_paragraph_break_at_the_seam_is_kept() {
    assert_eq!(
        merged("First part. ", &["\n\nSecond part."]),
        "First part. \n\nSecond part."
    );
}

#[test]
fn a_table_rule_may_repeat() {
    let prev = "| a | b |\n|---|---|\n| 1 | 2 |\n";
    let out = merged(prev, &["\n|---|---|\n| 3 | 4 |\n"]);
    assert!(out.ends_with("| 3 | 4 |\n"), "{out:?}");
    assert_eq!(out.matches("|---|---|").count(), 2, "{out:?}");
}

#[test]
fn code_lines_may_repeat_and_a_brace_is_not_an_overlap() {
    let prev = "Two loops:\n\n```rust\nfor a in xs {\n    total += a;\n}\n";
    let cont = "for b in ys {\n    total += b;\n    total += b;\n}\n```\n\nBoth add up.";
    assert_eq!(merged(prev, &[cont]), format!("{prev}{cont}"));
    let (by_char, _) = merged_by_char(prev, cont);
    assert_eq!(by_char, format!("{prev}{cont}"));
    // The answer was cut after a closing brace; the next one is new, not a repeat.
    let prev = "```rust\nfn a() {\n    if x {\n        y();\n    }";
    assert_eq!(merged(prev, &["\n}\n```"]), format!("{prev}\n}}\n```"));
}

#[test]
fn cjk_restart_and_overlap() {
    let answer = "计费服务向客户开具发票。它记录每一笔付款。最后，它提醒客户逾期的发票。";
    let cut = answer.char_indices().nth(15).unwrap().0;
    let prev = &answer[..cut];
    assert_eq!(merged(prev, &[answer]), answer);
    assert_eq!(merged(prev, &["以下是完整的回答：", answer]), answer);
    assert_eq!(merged_by_char(prev, answer).0, answer);
    // Overlap of the end, then new text.
    let overlap_start = answer.char_indices().nth(6).unwrap().0;
    assert_eq!(merged(prev, &[&answer[overlap_start..]]), answer);
    // A repeated sentence later in the round.
    let out = merged(prev, &[&answer[cut..], "计费服务向客户开具发票。"]);
    assert_eq!(out, answer);
}

#[test]
fn german_restart_with_preamble_and_umlauts() {
    let answer = "Ein Abrechnungsdienst stellt Rechnungen aus. Er verbucht jede Zahlung. \
Zuletzt erinnert er säumige Kunden an offene Beträge.";
    let prev = &answer[..55];
    let cont = format!("Gerne! Hier ist die vollständige Antwort:\n\n{answer}");
    assert_eq!(merged(prev, &[&cont]), answer);
    assert_eq!(merged_by_char(prev, &cont).0, answer);
    // Case-insensitive: a repeated sentence that changed case is still a repeat.
    let out = merged(
        prev,
        &[
            &answer[55..],
            " EIN ABRECHNUNGSDIENST STELLT RECHNUNGEN AUS.",
        ],
    );
    assert_eq!(out.trim_end(), answer);
}

#[test]
fn new_text_streams_before_the_round_ends() {
    let prev = &ANSWER[..60];
    let mut m = Merge::new(prev);
    let mut shown = String::new();
    for w in ANSWER[60..].split_inclusive(' ') {
        shown.push_str(&m.push(w));
    }
    // Everything but the last sentence's end is out before the round finishes.
    assert!(shown.len() + 40 > ANSWER.len() - 60, "{shown:?}");
    shown.push_str(&m.finish());
    assert_eq!(format!("{prev}{shown}"), ANSWER);
}

#[test]
fn held_text_is_given_back() {
    let mut m = Merge::new("Before.");
    assert_eq!(m.push(" The next"), "");
    assert_eq!(m.into_held(), " The next");
}

// ---- property test ----

/// Words with distinct first and last three letters, none of them an opener, an
/// announcement or an instruction word: an answer built from distinct ones repeats no text of
/// eight characters, so any repeat the merge sees is one the test made.
const VOCAB: &[&str] = &[
    "apple", "bridge", "candle", "dolphin", "engine", "forest", "garden", "harbor", "island",
    "jungle", "kettle", "lemon", "mirror", "napkin", "orbit", "pencil", "quiver", "rocket",
    "sandal", "tunnel", "umpire", "velvet", "walrus", "yogurt", "zipper", "anchor", "cobalt",
    "desert", "ember", "falcon", "goblet", "hammock", "igloo", "kiwi", "ladder", "meadow",
    "nugget", "oyster", "parrot", "quartz", "ribbon", "uniform", "vortex", "wizard", "yacht",
    "zebra", "almond", "cactus", "donkey", "eclipse", "fossil", "gravel", "helmet", "indigo",
    "jigsaw", "koala", "lantern", "magnet", "nectar", "octopus", "raccoon", "thimble", "violin",
    "biscuit", "chimney", "drizzle", "ferret", "glacier", "hazel", "iris", "kayak", "mango",
    "olive", "radish", "spinach", "turnip", "tulip", "willow", "badger", "camel", "coyote",
    "gecko", "heron", "jaguar", "marmot", "panda", "pelican",
];

/// Chinese words with no character twice in the list, none of them in a preamble phrase.
const VOCAB_ZH: &[&str] = &[
    "苹果", "桥梁", "蜡烛", "海豚", "引擎", "森林", "花园", "港口", "岛屿", "水壶", "柠檬", "镜子",
    "餐巾", "轨道", "铅笔", "火箭", "凉鞋", "天鹅", "毛毯", "仙人", "化石", "砂砾", "头盔", "靛蓝",
    "拼图", "灯笼", "磁铁", "章鱼", "辣椒", "棉被", "浣熊", "顶针", "独角", "小提", "琴弦", "雨伞",
    "风筝", "钥匙", "剪刀", "樱桃", "骆驼", "鹦鹉", "松鼠", "沙漠", "珍珠", "斑马", "蜜蜂", "橄榄",
    "菠萝", "葡萄", "蘑菇", "螃蟹", "孔雀", "蝴蝶", "乌龟", "狐狸",
];

#[test]
fn the_chinese_vocabulary_repeats_no_character() {
    let mut seen = std::collections::HashSet::new();
    for w in VOCAB_ZH {
        for c in w.chars() {
            assert!(seen.insert(c), "{c} repeats");
            assert!(is_wide_char(c));
        }
    }
    for phrase in ANNOUNCEMENTS.iter().chain(OPENERS).chain(GOING_ON) {
        assert!(
            !VOCAB_ZH
                .iter()
                .any(|w| phrase.contains(*w) || w.contains(phrase)),
            "{phrase}"
        );
        for c in phrase.chars().filter(|c| is_wide_char(*c)) {
            assert!(!seen.contains(&c), "{c} of {phrase}");
        }
    }
}

#[test]
fn the_vocabulary_repeats_no_text() {
    let mut heads = std::collections::HashSet::new();
    let mut tails = std::collections::HashSet::new();
    for w in VOCAB {
        assert!(heads.insert(&w[..3]), "first three letters of {w} repeat");
        assert!(
            tails.insert(&w[w.len() - 3..]),
            "last three letters of {w} repeat"
        );
        assert!(!instruction_words().iter().any(|i| i == w), "{w}");
    }
}

/// An answer of distinct sentences built from a permutation of the vocabulary.
fn answer_from(words: &[&str], lengths: &[usize], ends: &[u8]) -> String {
    let wide = words[0].chars().all(is_wide_char);
    let mut out = String::new();
    let mut at = 0;
    for (i, &len) in lengths.iter().enumerate() {
        let ws = &words[at..at + len];
        at += len;
        let mut s = String::new();
        for (j, w) in ws.iter().enumerate() {
            if wide {
                s.push_str(w);
            } else if j == 0 {
                s.push_str(&w[..1].to_uppercase());
                s.push_str(&w[1..]);
            } else {
                s.push(' ');
                s.push_str(w);
            }
        }
        s.push(match (ends[i] % 3, wide) {
            (0, false) => '.',
            (1, false) => '!',
            (_, false) => '?',
            (0, true) => '。',
            (1, true) => '！',
            (_, true) => '？',
        });
        if i > 0 {
            out.push_str(match (ends[i] % 5 == 4, wide) {
                (true, _) => "\n\n",
                (false, false) => " ",
                (false, true) => "",
            });
        }
        out.push_str(&s);
    }
    out
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone)]
enum Shape {
    Rest,
    Whole,
    PreambleWhole(usize),
    Overlap(usize),
    Echo(usize),
    FromSentence(usize),
    /// Starting over, then writing something else after `usize` sentences.
    Drift(usize),
}

const PREAMBLES: &[&str] = &[
    "Sure! Here is the complete answer: ",
    "Here is the completed response:\n\n",
    "Certainly!\n",
    "Of course. Here's the full answer:\n",
    "好的！以下是完整的回答：\n",
];

const ECHOES: &[&str] = &[
    "Here is the completed response: Your previous reply was cut off by the length limit. \
Continue it exactly where it stopped.",
    "Your previous reply was cut off by the length limit. Continue it exactly where it \
stopped: do not repeat anything already written and add no preamble.",
    "Continue it exactly where it stopped:",
    "Your previous reply was cut off by the length limit.",
];

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Rest),
        Just(Shape::Whole),
        (0..PREAMBLES.len()).prop_map(Shape::PreambleWhole),
        (0usize..200).prop_map(Shape::Overlap),
        (0..ECHOES.len()).prop_map(Shape::Echo),
        (0usize..10).prop_map(Shape::FromSentence),
        (0usize..6).prop_map(Shape::Drift),
    ]
}

fn case() -> impl Strategy<Value = (String, usize, Shape, usize, String)> {
    (
        prop_oneof![
            3 => Just(VOCAB.to_vec()).prop_shuffle(),
            1 => Just(VOCAB_ZH.to_vec()).prop_shuffle(),
        ],
        proptest::collection::vec(3usize..7, 2..6),
        proptest::collection::vec(any::<u8>(), 6),
        any::<prop::sample::Index>(),
        shape(),
        1usize..12,
    )
        .prop_map(|(words, lengths, ends, cut, shape, chunk)| {
            let answer = answer_from(&words, &lengths, &ends);
            let bounds: Vec<usize> = (1..answer.len())
                .filter(|&k| answer.is_char_boundary(k) && !answer[..k].trim().is_empty())
                .collect();
            let cut = bounds[cut.index(bounds.len())];
            if let Shape::Drift(n) = shape {
                // Sentences the answer never had: words from the unused end of the vocabulary.
                let restart: String = answer.split_sentence_bounds().take(n).collect();
                let novel = answer_from(&words[words.len() - 10..], &[4, 5], &[0, 1]);
                let cont = format!(
                    "{restart}{}{novel}",
                    if restart.is_empty() { "" } else { " " }
                );
                return (answer, cut, Shape::Drift(n), chunk, cont);
            }
            (answer, cut, shape, chunk, String::new())
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES raises it for a longer search.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_merge_repeats_no_sentence_and_never_the_instruction((answer, cut, shape, chunk, drift) in case()) {
        let prev = &answer[..cut];
        let rest = &answer[cut..];
        let cont = match &shape {
            Shape::Rest => rest.to_string(),
            Shape::Whole => answer.clone(),
            Shape::PreambleWhole(i) => format!("{}{answer}", PREAMBLES[*i]),
            Shape::Overlap(k) => {
                // At least MIN_OVERLAP characters of the answer's end: a shorter overlap is
                // indistinguishable from a coincidence.
                let starts: Vec<usize> = (0..cut)
                    .filter(|&s| prev.is_char_boundary(s)
                        && Normalised::of(prev[s..].trim()).lower.len() >= MIN_OVERLAP)
                    .collect();
                prop_assume!(!starts.is_empty());
                format!("{}{rest}", &prev[starts[k % starts.len()]..])
            }
            Shape::Echo(i) => format!("{} {rest}", ECHOES[*i]),
            Shape::Drift(_) => drift.clone(),
            Shape::FromSentence(j) => {
                // Starting over from a sentence at or before the one the cut is in.
                let starts: Vec<usize> = answer
                    .split_sentence_bound_indices()
                    .map(|(at, _)| at)
                    .filter(|&at| at < cut)
                    .collect();
                answer[starts[j % starts.len()]..].to_string()
            }
        };
        let chars: Vec<char> = cont.chars().collect();
        let pieces: Vec<String> = chars.chunks(chunk).map(|c| c.iter().collect()).collect();
        let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
        let out = merged(prev, &refs);
        prop_assert!(repeated_sentences(&out).is_empty(), "repeats in {:?}", out);
        let lower = out.to_lowercase();
        prop_assert!(!lower.contains("length limit") && !lower.contains("where it stopped")
            && !lower.contains("previous reply") && !lower.contains("preamble"), "echo in {:?}", out);
        prop_assert!(out.starts_with(prev), "the first round changed: {:?}", out);
        if let Shape::Drift(_) = shape {
            // Only the new sentences are added (the answer's cut sentence stays cut).
            let novel = drift.split_sentence_bounds().filter(|s| !answer.contains(s.trim()));
            for s in novel {
                prop_assert!(out.contains(s.trim()), "{:?} lost from {:?}", s, out);
            }
        } else if let Shape::Echo(_) = shape {
            // After an echo, a word the answer was cut in reads as a new word: only
            // whitespace may differ.
            let bare = |t: &str| t.split_whitespace().collect::<String>();
            prop_assert_eq!(bare(&out), bare(&answer));
        } else {
            prop_assert_eq!(collapse(&out), collapse(&answer), "shape {:?}", shape);
        }
    }
}

#[test]
fn an_echo_with_a_preamble_after_the_answer_never_shows() {
    let prev = &ANSWER[..60];
    let echo = "Here is the completed response: Your previous reply was cut off by the length \
limit. Continue it exactly where it stopped.";
    let cont = format!("{} {echo}", &ANSWER[60..]);
    let (out, steps) = merged_by_char(prev, &cont);
    assert_eq!(out.trim_end(), ANSWER);
    for s in steps {
        assert!(!s.contains("Here is"), "{s:?}");
    }
    // A sentence that merely starts like a preamble is kept.
    assert_eq!(
        merged("The fee is due. ", &["Here is why: the contract says so."]),
        "The fee is due. Here is why: the contract says so."
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any text, cut anywhere: no panic, and what a round adds never contains the instruction.
    #[test]
    fn the_merge_takes_any_text(
        prev in "[a-zA-Zé世界 .:!?。：\n`]{1,60}",
        chunks in proptest::collection::vec(
            prop_oneof![
                "[a-zA-Zé世界 .:!?。：\n`*|-]{0,12}",
                Just(CONTINUE_PROMPT.to_string()),
                Just("Sure! Here is the complete answer:".to_string()),
                Just("```".to_string()),
            ],
            0..10,
        ),
    ) {
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let out = merged(&prev, &refs);
        prop_assert!(out.starts_with(&prev));
        prop_assert!(!out[prev.len()..].contains("length limit"), "{:?}", out);
    }
}
