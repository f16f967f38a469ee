//! Cutting one round's inputs into forward passes.
//!
//! A pass pads every input to its longest, so one long text among short ones
//! makes the whole pass pay for its length; yet every pass also has a fixed
//! cost, so cutting too finely loses as much as it saves. The inputs are
//! sorted by length and split into runs of similar length by a small dynamic
//! programme that minimises `passes × PASS_OVERHEAD_TOKENS + padded tokens`,
//! each pass within the padded-token budget.

/// The fixed cost of a forward pass, in tokens of work: on MiniLM on a CPU a
/// pass of one 8-token input takes about as long as 30 to 40 tokens do in a
/// large pass. Only the balance matters, so a round figure does.
const PASS_OVERHEAD_TOKENS: usize = 32;

/// Longest pass the planner considers; bounds its work on rounds of many
/// tiny inputs (a pass this wide is already as efficient as a pass gets).
const MAX_PASS_INPUTS: usize = 1024;

/// One input of a round: request `job`, its input number `index`, its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub job: usize,
    pub index: usize,
    pub len: usize,
}

/// Groups the inputs of a round (`lengths[job][index]`) into passes, shortest
/// first. A pass stays within `max_padded_tokens` (inputs × longest) unless a
/// single input is longer than that, in which case it runs alone.
pub(crate) fn plan(lengths: &[Vec<usize>], max_padded_tokens: usize) -> Vec<Vec<Slot>> {
    let mut slots: Vec<Slot> = lengths
        .iter()
        .enumerate()
        .flat_map(|(job, lens)| {
            lens.iter()
                .enumerate()
                .map(move |(index, &len)| Slot { job, index, len })
        })
        .collect();
    // Stable and total, so the same round always gives the same passes.
    slots.sort_by_key(|s| (s.len, s.job, s.index));
    let n = slots.len();
    // best[i]: cheapest cost of the first i slots; start[i]: where the last
    // pass of that plan begins. A pass j..i costs overhead + (i - j) × len[i-1],
    // its longest input being the last (the slots are sorted).
    let mut best = vec![0usize; n + 1];
    let mut start = vec![0usize; n + 1];
    for i in 1..=n {
        let longest = slots[i - 1].len;
        best[i] = usize::MAX;
        for j in (i.saturating_sub(MAX_PASS_INPUTS)..i).rev() {
            let width = i - j;
            if width > 1 && width * longest > max_padded_tokens {
                break;
            }
            let cost = best[j] + PASS_OVERHEAD_TOKENS + width * longest;
            if cost < best[i] {
                best[i] = cost;
                start[i] = j;
            }
        }
    }
    let mut passes = Vec::new();
    let mut end = n;
    while end > 0 {
        let from = start[end];
        passes.push(slots[from..end].to_vec());
        end = from;
    }
    passes.reverse();
    passes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(passes: &[Vec<Slot>]) -> Vec<Vec<usize>> {
        passes.iter().map(|p| p.iter().map(|s| s.len).collect()).collect()
    }

    #[test]
    fn sorts_by_length_and_splits_where_padding_costs_more_than_a_pass() {
        // One long text does not drag three short ones to its length...
        assert_eq!(
            shape(&plan(&[vec![250, 10], vec![10, 10]], 8192)),
            [vec![10, 10, 10], vec![250]]
        );
        // ...but inputs of nearly the same length share a pass.
        assert_eq!(shape(&plan(&[vec![101], vec![100, 102]], 8192)), [vec![100, 101, 102]]);
    }

    #[test]
    fn passes_respect_the_padded_budget() {
        let lengths = vec![vec![200, 3, 64], vec![5, 64, 64, 64], vec![100, 4, 150, 64]];
        let passes = plan(&lengths, 256);
        for pass in &passes {
            let longest = pass.iter().map(|s| s.len).max().unwrap_or(0);
            assert!(pass.len() * longest <= 256, "{:?}", shape(&passes));
            assert!(pass.windows(2).all(|w| w[0].len <= w[1].len));
        }
        assert_eq!(passes.iter().map(Vec::len).sum::<usize>(), 11);
    }

    #[test]
    fn every_input_appears_once_with_its_origin() {
        let lengths = vec![vec![7, 7, 2], vec![], vec![9]];
        let mut seen: Vec<(usize, usize)> = plan(&lengths, 10)
            .into_iter()
            .flatten()
            .map(|s| {
                assert_eq!(lengths[s.job][s.index], s.len);
                (s.job, s.index)
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, [(0, 0), (0, 1), (0, 2), (2, 0)]);
    }

    #[test]
    fn an_input_over_the_budget_runs_alone() {
        let passes = plan(&[vec![300, 2, 2]], 256);
        assert_eq!(shape(&passes), [vec![2, 2], vec![300]]);
        assert!(plan(&[], 256).is_empty());
    }

    #[test]
    fn many_tiny_inputs_stay_fast_and_bounded() {
        let lengths = vec![vec![1; 5000]];
        let passes = plan(&lengths, 1_000_000);
        assert!(passes.iter().all(|p| p.len() <= MAX_PASS_INPUTS));
        assert_eq!(passes.iter().map(Vec::len).sum::<usize>(), 5000);
    }
}
