//! `search_docs`: the step's documents (the text files under `inputs/`) cut into passages,
//! embedded through the gateway with the plan's embedding model the first time the model
//! searches, and ranked by cosine similarity to each query. The index lives in the agent's
//! memory for the step, bounded by the step's share of the plan's L2 tier (the vector-index
//! RAM): passages beyond it are left out, and the answer says so.

use std::time::Duration;

use crate::gateway::{Gateway, GatewayError};
use crate::workspace::{EntryKind, Workspace};

/// Characters a passage holds at most (passages end at a line break where they can).
pub const PASSAGE: usize = 1200;
/// Passages embedded per request.
const BATCH: usize = 32;
/// Passages an answer gives.
pub const TOP: usize = 5;
/// The least share of the best score a passage found must have.
pub const RELATIVE_FLOOR: f32 = 0.5;
/// Files indexed at most.
const MAX_FILES: usize = 1000;

/// A passage of a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// `inputs/…`, and the lines it spans.
    pub file: String,
    pub first_line: usize,
    pub last_line: usize,
    pub text: String,
}

/// The index of a step's documents.
#[derive(Debug, Default)]
pub struct Index {
    passages: Vec<Passage>,
    vectors: Vec<Vec<f32>>,
    /// Passages not indexed (over the size bound).
    pub left_out: usize,
}

/// Cut a document into passages of at most [`PASSAGE`] characters, on line breaks.
pub fn passages(file: &str, text: &str) -> Vec<Passage> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut first = 1;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if !current.is_empty() && current.len() + line.len() + 1 > PASSAGE {
            out.push(Passage {
                file: file.to_string(),
                first_line: first,
                last_line: n - 1,
                text: std::mem::take(&mut current),
            });
            first = n;
        }
        let mut line = line;
        // A single line longer than a passage is cut on character boundaries.
        while line.len() > PASSAGE {
            let mut end = PASSAGE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            if !current.is_empty() {
                out.push(Passage {
                    file: file.to_string(),
                    first_line: first,
                    last_line: n,
                    text: std::mem::take(&mut current),
                });
            }
            out.push(Passage { file: file.to_string(), first_line: n, last_line: n, text: line[..end].to_string() });
            line = &line[end..];
            first = n;
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        let last = text.lines().count().max(first);
        out.push(Passage { file: file.to_string(), first_line: first, last_line: last, text: current });
    }
    out.retain(|p| !p.text.trim().is_empty());
    out
}

impl Index {
    /// Index the text files under `inputs/`, keeping the vectors within `max_bytes`.
    pub fn build(
        ws: &Workspace,
        gateway: &Gateway,
        model: &str,
        max_bytes: u64,
        time: Duration,
    ) -> Result<Index, String> {
        let mut all = Vec::new();
        let mut dirs = vec!["inputs".to_string()];
        let mut files = 0;
        while let Some(dir) = dirs.pop() {
            let Ok((entries, _)) = ws.list(&dir) else { continue };
            for e in entries {
                let path = format!("{dir}/{}", e.name);
                match e.kind {
                    EntryKind::Directory => dirs.push(path),
                    EntryKind::File if files < MAX_FILES => {
                        files += 1;
                        let Ok((data, _)) = ws.read(&path) else { continue };
                        if data.contains(&0) {
                            continue;
                        }
                        all.extend(passages(&path, &String::from_utf8_lossy(&data)));
                    }
                    _ => {}
                }
            }
        }
        all.sort_by(|a, b| (&a.file, a.first_line).cmp(&(&b.file, b.first_line)));
        let deadline = std::time::Instant::now() + time;
        let mut index = Index::default();
        let mut bytes = 0u64;
        for batch in all.chunks(BATCH) {
            if index.left_out > 0 {
                index.left_out += batch.len();
                continue;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let texts: Vec<String> = batch.iter().map(|p| p.text.clone()).collect();
            let vectors =
                gateway.embed(model, &texts, left).map_err(|e: GatewayError| format!("the embedding model: {e}"))?;
            for (p, v) in batch.iter().zip(vectors) {
                let size = (v.len() * 4) as u64;
                if bytes + size > max_bytes {
                    index.left_out += 1;
                    continue;
                }
                bytes += size;
                index.passages.push(p.clone());
                index.vectors.push(normalized(v));
            }
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.passages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// The passages nearest `query` (already embedded), best first, with their scores: at
    /// most `n`, and none scoring below half the best (a small model cites what it is shown;
    /// a passage far below the best is noise to it).
    pub fn nearest(&self, query: &[f32], n: usize) -> Vec<(f32, &Passage)> {
        let q = normalized(query.to_vec());
        let mut scored: Vec<(f32, &Passage)> = self
            .vectors
            .iter()
            .zip(&self.passages)
            .map(|(v, p)| (v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), p))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(n);
        if let Some(&(best, _)) = scored.first() {
            if best > 0.0 {
                scored.retain(|(score, _)| *score >= best * RELATIVE_FLOOR);
            }
        }
        scored
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_cut_into_passages_on_lines() {
        let text = format!("{}\n{}\nshort\n", "a".repeat(700), "b".repeat(700));
        let p = passages("inputs/doc.txt", &text);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].first_line, p[0].last_line), (1, 1));
        assert_eq!((p[1].first_line, p[1].last_line, p[1].text.ends_with("short")), (2, 3, true));
        let long = "x".repeat(PASSAGE * 2 + 5);
        let p = passages("inputs/one-line.txt", &long);
        assert_eq!(p.iter().map(|p| p.text.len()).collect::<Vec<_>>(), [PASSAGE, PASSAGE, 5]);
        assert!(passages("inputs/empty.txt", "\n\n").is_empty());
    }

    #[test]
    fn the_nearest_passages_come_first() {
        let mut index = Index::default();
        for (i, v) in [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]].iter().enumerate() {
            index.passages.push(Passage {
                file: format!("inputs/{i}"),
                first_line: 1,
                last_line: 1,
                text: String::new(),
            });
            index.vectors.push(normalized(v.to_vec()));
        }
        let best: Vec<&str> = index.nearest(&[0.9, 0.1], 2).iter().map(|(_, p)| p.file.as_str()).collect();
        assert_eq!(best, ["inputs/0", "inputs/2"]);
        // [0, 1] scores 0.11 against the best's 0.99: below half of it, left out.
        let all: Vec<&str> = index.nearest(&[0.9, 0.1], 3).iter().map(|(_, p)| p.file.as_str()).collect();
        assert_eq!(all, ["inputs/0", "inputs/2"]);
    }
}
