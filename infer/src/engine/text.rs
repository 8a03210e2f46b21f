//! A request's text: whole characters out of token pieces, stop sequences held back until
//! ruled out.

use super::batch::Active;
use super::Event;

impl Active {
    /// Move complete characters from `partial` to `held`, send what cannot be the start of
    /// a stop sequence; the index of the stop sequence that appeared, if one did (the text
    /// before it is sent).
    pub(super) fn push_text(&mut self) -> Option<usize> {
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Not UTF-8 at all (a byte-fallback fragment that never completes): lossy.
                let s = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.held.push_str(&s);
                return self.release();
            }
            Err(e) => e.valid_up_to(),
        };
        let text = std::str::from_utf8(&self.partial[..valid]).expect("checked");
        self.held.push_str(text);
        self.partial.drain(..valid);
        self.release()
    }

    fn release(&mut self) -> Option<usize> {
        let found =
            self.stop.iter().enumerate().filter_map(|(k, s)| self.held.find(s.as_str()).map(|at| (at, k))).min();
        if let Some((at, word)) = found {
            // What follows the stop sequence is not sent, nor half a character after it.
            self.held.truncate(at);
            self.partial.clear();
            let text = std::mem::take(&mut self.held);
            if !text.is_empty() {
                let _ = self.events.send(Event::Text(text));
            }
            return Some(word);
        }
        let keep = self.stop.iter().map(|s| held_back(&self.held, s)).max().unwrap_or(0);
        let send = self.held.len() - keep;
        if send > 0 {
            let rest = self.held.split_off(send);
            let text = std::mem::replace(&mut self.held, rest);
            let _ = self.events.send(Event::Text(text));
        }
        None
    }
}

/// The longest tail of `text` that is a proper start of `stop` (bytes to hold back).
fn held_back(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_possible_start_of_a_stop_sequence_is_held_back() {
        assert_eq!(held_back("hello wor", "world"), 3);
        assert_eq!(held_back("hello", "world"), 0);
        assert_eq!(held_back("ab", "b!"), 1);
        assert_eq!(held_back("é", "éa"), 2);
        assert_eq!(held_back("", "x"), 0);
    }
}
