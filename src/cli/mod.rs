//! Pieces of the `anchorbot` command line that shape what the console shows: the warnings
//! shown between the turns of `chat` ([`between_turns`]) and the answer-only standard output
//! of `ask` ([`ask_output`]).

pub mod ask_output;
pub mod between_turns;
