//! OpenAI analyzer (to be written).
