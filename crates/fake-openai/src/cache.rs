//! Prompt caching as OpenAI reports it in
//! `usage.prompt_tokens_details.cached_tokens`: nothing for a prompt under
//! 1,024 tokens; otherwise the longest prefix, in whole 128-token blocks and
//! at least 1,024 tokens, shared with a prompt seen recently. Tokens are
//! counted as everywhere in the fake: characters of the messages' contents,
//! in order, over four; a block is 512 characters.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::reply::{fnv1a, fnv1a_from, text_of};

/// Tokens per cache block, as OpenAI caches them.
const BLOCK_TOKENS: u64 = 128;
/// The shortest prompt, and the shortest hit, OpenAI caches.
const MIN_TOKENS: u64 = 1024;
/// Block-prefix hashes remembered: the recent past, bounded.
const CAPACITY: usize = 1 << 18;

/// Hashes of the block prefixes of recent prompts, oldest evicted first.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    order: VecDeque<u64>,
    /// How many entries of `order` hold each hash.
    held: HashMap<u64, u32>,
}

impl PromptCache {
    /// The cached tokens of the request `body`'s prompt; remembers its
    /// prefixes for later requests.
    pub(crate) fn lookup_and_remember(&mut self, body: &Value) -> u64 {
        let prefixes = block_prefixes(body);
        // A hit of at least 1,024 tokens implies a prompt at least as long.
        let hit = prefixes
            .iter()
            .take_while(|h| self.held.contains_key(h))
            .count() as u64;
        for hash in prefixes {
            self.remember(hash);
        }
        let cached = hit * BLOCK_TOKENS;
        if cached >= MIN_TOKENS { cached } else { 0 }
    }

    fn remember(&mut self, hash: u64) {
        if self.order.len() == CAPACITY
            && let Some(old) = self.order.pop_front()
            && let Some(n) = self.held.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.held.remove(&old);
            }
        }
        self.order.push_back(hash);
        *self.held.entry(hash).or_default() += 1;
    }
}

/// The hash of every whole-block prefix of the prompt, shortest first.
fn block_prefixes(body: &Value) -> Vec<u64> {
    let block_chars = (BLOCK_TOKENS * 4) as usize;
    let mut out = Vec::new();
    let mut hash = fnv1a("");
    let mut in_block = 0;
    let mut buf = [0u8; 4];
    for message in body["messages"].as_array().into_iter().flatten() {
        for c in text_of(&message["content"]).chars() {
            hash = fnv1a_from(hash, c.encode_utf8(&mut buf));
            in_block += 1;
            if in_block == block_chars {
                out.push(hash);
                in_block = 0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn prompt(system: &str, user: &str) -> Value {
        json!({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
    }

    #[test]
    fn short_prompts_never_hit_and_long_ones_hit_their_shared_whole_blocks() {
        let mut cache = PromptCache::default();
        let short = prompt("be brief", "hello");
        assert_eq!(cache.lookup_and_remember(&short), 0);
        assert_eq!(cache.lookup_and_remember(&short), 0);
        // 1,200 tokens of shared system prompt, then different users.
        let system = "s".repeat(4800);
        assert_eq!(cache.lookup_and_remember(&prompt(&system, "first user")), 0);
        // 4,800 shared characters: 9 whole blocks (4,608), 1,152 tokens.
        assert_eq!(
            cache.lookup_and_remember(&prompt(&system, "other user")),
            1152
        );
        // The same prompt again: every whole block.
        let again = prompt(&system, &"u".repeat(1000));
        cache.lookup_and_remember(&again);
        assert_eq!(cache.lookup_and_remember(&again), 11 * 128);
        // A shared prefix under 1,024 tokens is no hit.
        let mostly_new = prompt(&"s".repeat(3000), &"v".repeat(3000));
        assert_eq!(cache.lookup_and_remember(&mostly_new), 0);
    }

    #[test]
    fn the_cache_forgets_the_oldest_prefixes() {
        let mut cache = PromptCache::default();
        for i in 0..(CAPACITY + 10) as u64 {
            cache.remember(i);
        }
        assert_eq!(cache.order.len(), CAPACITY);
        assert!(!cache.held.contains_key(&0));
        assert!(cache.held.contains_key(&(CAPACITY as u64 + 9)));
    }
}
