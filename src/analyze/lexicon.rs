//! Lexicon analyzer (to be written).
