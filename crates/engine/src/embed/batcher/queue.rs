//! The batcher's waiting line as a plain struct, so the policy that decides
//! which requests share a round is unit-tested without threads or channels.

use std::collections::VecDeque;
use std::time::Instant;

/// What the queue needs to know about a waiting request.
pub(crate) trait Waiting {
    /// Tokens in all of the request's inputs.
    fn tokens(&self) -> usize;
    /// When the request was accepted: the wait for company counts from here.
    fn arrived(&self) -> Instant;
    /// True once nobody waits for the answer (the client went away).
    fn abandoned(&self) -> bool;
}

/// How much one round may take from the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub max_tokens: usize,
    pub max_requests: usize,
}

/// A round taken from the queue, and how many abandoned requests were
/// dropped on the way (they leave the queue too).
pub(crate) struct Round<T> {
    pub items: Vec<T>,
    pub abandoned: usize,
}

pub(crate) struct Queue<T> {
    items: VecDeque<T>,
    tokens: usize,
}

impl<T: Waiting> Queue<T> {
    pub fn new() -> Self {
        Self {
            items: VecDeque::new(),
            tokens: 0,
        }
    }

    pub fn push(&mut self, item: T) {
        self.tokens += item.tokens();
        self.items.push_back(item);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Arrival of the request that has waited longest.
    pub fn oldest(&self) -> Option<Instant> {
        self.items.front().map(Waiting::arrived)
    }

    /// Whether the waiting requests already fill a round, so waiting for
    /// more would only add latency.
    pub fn fills(&self, budget: &Budget) -> bool {
        self.items.len() >= budget.max_requests || self.tokens >= budget.max_tokens
    }

    /// Takes the next round in arrival order: requests while both limits
    /// hold, and always at least one, so a request larger than the budget
    /// runs alone instead of never. Stops at the first request that does not
    /// fit rather than skipping ahead, so big requests are not starved by
    /// small ones. Abandoned requests are dropped wherever they are met.
    pub fn next_round(&mut self, budget: &Budget) -> Round<T> {
        let mut round = Round {
            items: Vec::new(),
            abandoned: 0,
        };
        let mut tokens = 0;
        while let Some(front) = self.items.front() {
            if front.abandoned() {
                self.tokens -= front.tokens();
                self.items.pop_front();
                round.abandoned += 1;
                continue;
            }
            let fits = tokens + front.tokens() <= budget.max_tokens && round.items.len() < budget.max_requests;
            if !round.items.is_empty() && !fits {
                break;
            }
            let Some(item) = self.items.pop_front() else { break };
            tokens += item.tokens();
            self.tokens -= item.tokens();
            round.items.push(item);
        }
        round
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Req {
        id: usize,
        tokens: usize,
        gone: bool,
        at: Instant,
    }

    impl Waiting for Req {
        fn tokens(&self) -> usize {
            self.tokens
        }
        fn arrived(&self) -> Instant {
            self.at
        }
        fn abandoned(&self) -> bool {
            self.gone
        }
    }

    fn queue(reqs: &[(usize, bool)]) -> Queue<Req> {
        let mut q = Queue::new();
        for (id, &(tokens, gone)) in reqs.iter().enumerate() {
            q.push(Req {
                id,
                tokens,
                gone,
                at: Instant::now(),
            });
        }
        q
    }

    fn ids(round: &Round<Req>) -> Vec<usize> {
        round.items.iter().map(|r| r.id).collect()
    }

    const BUDGET: Budget = Budget {
        max_tokens: 100,
        max_requests: 3,
    };

    #[test]
    fn takes_in_order_within_both_limits() {
        let mut q = queue(&[(10, false), (20, false), (30, false), (5, false)]);
        assert!(q.fills(&BUDGET));
        let round = q.next_round(&BUDGET);
        assert_eq!(ids(&round), [0, 1, 2]);
        assert_eq!(ids(&q.next_round(&BUDGET)), [3]);
        assert!(q.is_empty());
    }

    #[test]
    fn stops_at_the_first_request_over_the_token_budget() {
        let mut q = queue(&[(60, false), (50, false), (1, false)]);
        assert_eq!(ids(&q.next_round(&BUDGET)), [0]);
        assert_eq!(ids(&q.next_round(&BUDGET)), [1, 2]);
    }

    #[test]
    fn an_oversized_request_runs_alone() {
        let mut q = queue(&[(500, false), (1, false)]);
        assert!(q.fills(&BUDGET));
        assert_eq!(ids(&q.next_round(&BUDGET)), [0]);
        assert!(!q.fills(&BUDGET));
        assert_eq!(ids(&q.next_round(&BUDGET)), [1]);
    }

    #[test]
    fn abandoned_requests_are_dropped_and_counted() {
        let mut q = queue(&[(10, true), (10, false), (90, true), (10, false)]);
        let round = q.next_round(&BUDGET);
        assert_eq!(ids(&round), [1, 3]);
        assert_eq!(round.abandoned, 2);
        assert!(q.is_empty());
        assert!(!q.fills(&BUDGET));
        let empty = q.next_round(&BUDGET);
        assert!(empty.items.is_empty() && empty.abandoned == 0);
    }

    #[test]
    fn oldest_is_the_front() {
        let mut q = queue(&[]);
        assert!(q.oldest().is_none());
        let first = Instant::now();
        q.push(Req {
            id: 0,
            tokens: 1,
            gone: false,
            at: first,
        });
        q.push(Req {
            id: 1,
            tokens: 1,
            gone: false,
            at: Instant::now(),
        });
        assert_eq!(q.oldest(), Some(first));
    }
}
