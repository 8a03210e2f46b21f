//! Prompts pushed out of their slots, kept in host memory (`--cache-ram`; agentd gives the
//! plan's L1 hot cache): a slot about to give up most of what it holds saves its sequence's
//! KV state here first, and a request whose prompt shares a longer prefix with a saved one
//! than with its slot gets that state back instead of decoding it again. More
//! conversations and agents than slots keep their prefixes this way.
//!
//! Bounded in bytes; the least recently used entry goes first. An entry that is a prefix of
//! a newer one is dropped (the newer holds it); a prompt already held whole is not saved
//! twice.

use std::collections::VecDeque;

use llama_cpp_2::token::LlamaToken;

use super::batch::common_prefix;

/// How many tokens' state a restore may copy per token it spares decoding.
const RESTORE_RATIO: usize = 16;

struct Entry<S> {
    tokens: Vec<LlamaToken>,
    state: S,
    bytes: usize,
}

/// The saved prompts, oldest first; `S` is the sequence's serialized KV state.
pub(super) struct PromptStore<S> {
    entries: VecDeque<Entry<S>>,
    limit: usize,
    bytes: usize,
}

impl<S> PromptStore<S> {
    /// A store of at most `limit` bytes; 0: nothing is kept.
    pub(super) fn new(limit: usize) -> PromptStore<S> {
        PromptStore { entries: VecDeque::new(), limit, bytes: 0 }
    }

    pub(super) fn enabled(&self) -> bool {
        self.limit > 0
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether an entry holds all of `tokens` (they are its prefix): saving them again
    /// would add nothing. The entry counts as used.
    pub(super) fn holds(&mut self, tokens: &[LlamaToken]) -> bool {
        let Some(k) = self.entries.iter().position(|e| common_prefix(&e.tokens, tokens) == tokens.len()) else {
            return false;
        };
        self.touch(k);
        true
    }

    /// Keep `tokens` and their state of `bytes` bytes, making room by dropping the least
    /// recently used entries. False when it is larger than the whole store.
    pub(super) fn put(&mut self, tokens: Vec<LlamaToken>, state: S, bytes: usize) -> bool {
        if bytes > self.limit {
            return false;
        }
        let mut k = 0;
        while k < self.entries.len() {
            if common_prefix(&self.entries[k].tokens, &tokens) == self.entries[k].tokens.len() {
                self.remove(k);
            } else {
                k += 1;
            }
        }
        while self.bytes + bytes > self.limit {
            self.remove(0);
        }
        self.bytes += bytes;
        self.entries.push_back(Entry { tokens, state, bytes });
        true
    }

    /// The entry sharing the longest prefix with `prompt` beyond the `have` tokens the slot
    /// holds already, worth restoring: its tokens, its state and the tokens it shares (it
    /// stays, as the most recently used). Restoring copies the whole entry and decoding
    /// costs far more per token than copying, so an entry is worth it when the tokens it
    /// spares are at least 1/`RESTORE_RATIO` of its length.
    pub(super) fn best(&mut self, prompt: &[LlamaToken], have: usize) -> Option<(&[LlamaToken], &S, usize)> {
        let (k, shared) = self
            .entries
            .iter()
            .enumerate()
            .map(|(k, e)| (k, common_prefix(&e.tokens, prompt), e.tokens.len()))
            .filter(|&(_, shared, len)| shared > have && (shared - have) * RESTORE_RATIO >= len)
            .max_by_key(|&(k, shared, _)| (shared, k))
            .map(|(k, shared, _)| (k, shared))?;
        self.touch(k);
        self.entries.back().map(|e| (e.tokens.as_slice(), &e.state, shared))
    }

    fn touch(&mut self, k: usize) {
        if let Some(e) = self.entries.remove(k) {
            self.entries.push_back(e);
        }
    }

    fn remove(&mut self, k: usize) {
        if let Some(e) = self.entries.remove(k) {
            self.bytes -= e.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[i32]) -> Vec<LlamaToken> {
        v.iter().map(|i| LlamaToken::new(*i)).collect()
    }

    #[test]
    fn the_longest_shared_prefix_comes_back_when_it_is_long_enough() {
        let mut s = PromptStore::new(1000);
        assert!(s.put(t(&[1, 2, 3, 4, 5]), "a", 10));
        assert!(s.put(t(&[1, 2, 9, 9]), "b", 10));
        let (tokens, state, shared) = s.best(&t(&[1, 2, 3, 4, 7]), 2).expect("a shares four");
        assert_eq!((tokens.len(), *state, shared), (5, "a", 4));
        assert!(s.best(&t(&[1, 2, 3, 4, 7]), 4).is_none(), "four is not more than the four held");
        assert!(s.best(&t(&[8]), 0).is_none());
        assert_eq!(s.len(), 2, "taking an entry leaves it in the store");
        let long: Vec<i32> = (0..100).collect();
        s.put(t(&long), "long", 10);
        assert!(s.best(&t(&long[..10]), 4).is_none(), "6 tokens spared are not worth copying 100");
        assert_eq!(s.best(&t(&long[..10]), 3).map(|(_, st, n)| (*st, n)), Some(("long", 10)), "7 are");
    }

    #[test]
    fn the_least_recently_used_entry_makes_room() {
        let mut s = PromptStore::new(30);
        s.put(t(&[1, 1]), 1, 10);
        s.put(t(&[2, 2]), 2, 10);
        s.put(t(&[3, 3]), 3, 10);
        assert!(s.best(&t(&[1, 1, 5]), 0).is_some(), "1 used: 2 is now the oldest");
        s.put(t(&[4, 4]), 4, 15);
        assert_eq!((s.len(), s.bytes()), (2, 25), "2 and 3 dropped for 15 bytes");
        assert!(s.best(&t(&[1, 1]), 0).is_some() && s.best(&t(&[4, 4]), 0).is_some());
        assert!(!s.put(t(&[5]), 5, 31), "larger than the store");
        assert_eq!(s.bytes(), 25);
    }

    #[test]
    fn a_prefix_is_not_kept_twice() {
        let mut s = PromptStore::new(100);
        s.put(t(&[1, 2, 3]), "short", 10);
        s.put(t(&[1, 2, 3, 4]), "long", 12);
        assert_eq!((s.len(), s.bytes()), (1, 12), "the longer holds the shorter");
        assert!(s.holds(&t(&[1, 2])) && s.holds(&t(&[1, 2, 3, 4])));
        assert!(!s.holds(&t(&[1, 2, 3, 4, 5])) && !s.holds(&t(&[2])));
        s.put(t(&[1, 2, 7]), "other", 10);
        assert_eq!(s.len(), 2, "a diverging prompt is kept beside");
    }

    #[test]
    fn a_store_of_nothing_keeps_nothing() {
        let mut s = PromptStore::new(0);
        assert!(!s.enabled());
        assert!(!s.put(t(&[1]), (), 1));
        assert_eq!(s.len(), 0);
    }
}
