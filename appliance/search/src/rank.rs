//! A top-k collector with a total order: score descending, then id ascending.
//!
//! tantivy's `TopDocs` breaks ties by document address, which changes when
//! segments merge, so equal scores could come back in a different order (or,
//! at the cut-off, a different set) from one commit to the next. This collector
//! ranks by `(score desc, id asc)` exactly: within a segment the id's term
//! ordinal in the fast-field dictionary sorts like the id itself, so each
//! segment keeps its best `limit` by `(score, ordinal)`, and the merge compares
//! the few survivors' ids as strings. It keeps tantivy's pruning (block-WAND for
//! plain term unions), lowering the threshold by one ulp so that documents tying
//! the current worst score are still offered.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::StrColumn;
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyError};

/// One ranked document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ranked {
    pub(crate) score: Score,
    pub(crate) id: String,
    pub(crate) addr: DocAddress,
}

/// The order of results: score descending, then id ascending.
pub(crate) fn rank_order(a: &Ranked, b: &Ranked) -> Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id))
}

/// Collects the best `limit` documents; `id_field` must be a FAST text field.
pub(crate) struct TopById {
    pub(crate) limit: usize,
    pub(crate) id_field: &'static str,
}

/// A candidate inside one segment. Its `Ord` puts the worst candidate on top
/// of the (max-)heap: lower score, then higher id ordinal, is "greater".
#[derive(Clone, Copy)]
struct Candidate {
    score: Score,
    ord: u64,
    doc: DocId,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| self.ord.cmp(&other.ord))
            .then_with(|| self.doc.cmp(&other.doc))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// Per-segment state of [`TopById`].
pub(crate) struct SegmentTop {
    segment: SegmentOrdinal,
    ids: StrColumn,
    limit: usize,
    heap: BinaryHeap<Candidate>,
}

/// What one segment hands to the merge: its best candidates and the column to
/// name them with.
pub(crate) struct SegmentFruit {
    segment: SegmentOrdinal,
    ids: StrColumn,
    best: Vec<Candidate>,
}

/// The largest score strictly below `x`, so that a pruning threshold of
/// `below(x)` still lets documents scoring exactly `x` through.
fn below(x: Score) -> Score {
    if x.is_nan() || x == Score::NEG_INFINITY {
        x
    } else if x > 0.0 {
        Score::from_bits(x.to_bits() - 1)
    } else if x == 0.0 {
        -Score::from_bits(1)
    } else {
        Score::from_bits(x.to_bits() + 1)
    }
}

impl SegmentTop {
    fn offer(&mut self, doc: DocId, score: Score) {
        let ord = self.ids.ords().first(doc).unwrap_or(u64::MAX);
        let c = Candidate { score, ord, doc };
        if self.heap.len() < self.limit {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    fn threshold(&self) -> Score {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.limit => below(worst.score),
            _ => Score::MIN,
        }
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.offer(doc, score);
    }

    fn harvest(self) -> SegmentFruit {
        SegmentFruit {
            segment: self.segment,
            ids: self.ids,
            best: self.heap.into_vec(),
        }
    }
}

impl Collector for TopById {
    type Fruit = Vec<Ranked>;
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let ids = reader.fast_fields().str(self.id_field)?.ok_or_else(|| {
            TantivyError::SchemaError(format!("`{}` is not a fast text field", self.id_field))
        })?;
        Ok(SegmentTop {
            segment,
            ids,
            limit: self.limit,
            heap: BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentFruit> {
        let mut top = self.for_segment(segment, reader)?;
        if self.limit > 0 {
            let alive = reader.alive_bitset();
            weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    top.offer(doc, score);
                }
                top.threshold()
            })?;
        }
        Ok(top.harvest())
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Vec<Ranked>> {
        let mut all = Vec::new();
        for fruit in fruits {
            for c in fruit.best {
                let mut id = String::new();
                if c.ord != u64::MAX {
                    fruit.ids.ord_to_str(c.ord, &mut id)?;
                }
                all.push(Ranked {
                    score: c.score,
                    id,
                    addr: DocAddress::new(fruit.segment, c.doc),
                });
            }
        }
        all.sort_by(rank_order);
        all.truncate(self.limit);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_the_next_smaller_float() {
        for x in [1.0f32, 0.5, 3.75e-3, 1e30, -2.0] {
            let b = below(x);
            assert!(b < x, "{b} < {x}");
            assert_eq!(b.to_bits().abs_diff(x.to_bits()), 1);
        }
        assert!(below(0.0) < 0.0);
        assert_eq!(below(Score::NEG_INFINITY), Score::NEG_INFINITY);
    }

    #[test]
    fn worst_candidate_is_greatest() {
        let c = |score, ord| Candidate { score, ord, doc: 0 };
        assert!(c(1.0, 5) > c(2.0, 9), "lower score is worse");
        assert!(c(1.0, 5) > c(1.0, 4), "same score: higher id is worse");
    }
}
