//! Cutting one round's inputs into forward passes.
//!
//! The encoder packs a pass's inputs end to end without padding, so a pass
//! costs its real tokens (plus attention, which is per input and does not
//! care how inputs are grouped) and a fixed overhead: fewer, fuller passes
//! are better. Inputs are sorted shortest first — short requests are answered
//! by the first pass, which keeps their latency low when a round needs
//! several — and cut into passes of at most `max_tokens` tokens.

/// Most inputs in one pass; a pass this wide is as efficient as passes get.
const MAX_PASS_INPUTS: usize = 1024;

/// One input of a round: request `job`, its input number `index`, its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub job: usize,
    pub index: usize,
    pub len: usize,
}

/// Groups the inputs of a round (`lengths[job][index]`) into passes, shortest
/// first. A pass holds at most `max_tokens` tokens unless a single input is
/// longer than that, in which case it runs alone.
pub(crate) fn plan(lengths: &[Vec<usize>], max_tokens: usize) -> Vec<Vec<Slot>> {
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
    let mut passes: Vec<Vec<Slot>> = Vec::new();
    let mut tokens = 0;
    for slot in slots {
        match passes.last_mut() {
            Some(pass) if tokens + slot.len <= max_tokens && pass.len() < MAX_PASS_INPUTS => {
                tokens += slot.len;
                pass.push(slot);
            }
            _ => {
                tokens = slot.len;
                passes.push(vec![slot]);
            }
        }
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(passes: &[Vec<Slot>]) -> Vec<Vec<usize>> {
        passes.iter().map(|p| p.iter().map(|s| s.len).collect()).collect()
    }

    #[test]
    fn mixed_lengths_share_one_pass_shortest_first() {
        // No padding: a long text costs the short ones nothing.
        assert_eq!(
            shape(&plan(&[vec![250, 10], vec![12, 10]], 8192)),
            [vec![10, 10, 12, 250]]
        );
    }

    #[test]
    fn passes_respect_the_token_budget() {
        let lengths = vec![vec![200, 3, 64], vec![5, 64, 64, 64], vec![100, 4, 150, 64]];
        let passes = plan(&lengths, 256);
        for pass in &passes {
            assert!(pass.iter().map(|s| s.len).sum::<usize>() <= 256, "{:?}", shape(&passes));
            assert!(pass.windows(2).all(|w| w[0].len <= w[1].len));
        }
        assert_eq!(passes.iter().map(Vec::len).sum::<usize>(), 11);
        // Greedy filling: no two neighbouring passes could have been merged.
        for w in passes.windows(2) {
            let t = |p: &Vec<Slot>| p.iter().map(|s| s.len).sum::<usize>();
            assert!(t(&w[0]) + w[1][0].len > 256);
        }
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
    fn many_tiny_inputs_stay_bounded() {
        let lengths = vec![vec![1; 5000]];
        let passes = plan(&lengths, 1_000_000);
        assert!(passes.iter().all(|p| p.len() <= MAX_PASS_INPUTS));
        assert_eq!(passes.iter().map(Vec::len).sum::<usize>(), 5000);
    }
}
