//! An upload's LLM budget (`analyzer.openai.max_cost_usd`), plain code
//! shared by the sync and batch paths.

use super::AnalyzeStop;
use crate::analyze::FatalKind;

/// A call is sent only when the most it can cost fits beside what was
/// spent (earlier runs of the upload included) and what calls in flight may
/// still cost.
#[derive(Debug)]
pub(super) struct Budget {
    limit: Option<f64>,
    spent: f64,
    reserved: f64,
}

impl Budget {
    pub(super) fn new(limit: Option<f64>, spent: f64) -> Self {
        Self {
            limit,
            spent,
            reserved: 0.0,
        }
    }

    /// Reserves `worst` dollars for a call; false when that could pass the
    /// limit.
    pub(super) fn try_reserve(&mut self, worst: f64) -> bool {
        match self.limit {
            Some(limit) if self.spent + self.reserved + worst > limit => false,
            _ => {
                self.reserved += worst;
                true
            }
        }
    }

    /// A call that reserved `reserved` ended having cost `cost`.
    pub(super) fn settle(&mut self, reserved: f64, cost: f64) {
        self.reserved = (self.reserved - reserved).max(0.0);
        self.spent += cost;
    }

    /// Why the upload stops: the next call could pass the limit.
    pub(super) fn exhausted(&self, next: f64) -> AnalyzeStop {
        AnalyzeStop::Fatal {
            kind: FatalKind::BudgetExhausted,
            detail: format!(
                "stopped before passing the LLM budget: ${:.4} spent of ${:.4} \
                 (analyzer.openai.max_cost_usd), and the next conversation could cost up to ${next:.4}; \
                 raise the budget and resume the upload",
                self.spent,
                self.limit.unwrap_or_default(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_calls_while_their_worst_case_fits() {
        let mut b = Budget::new(Some(1.0), 0.25);
        assert!(b.try_reserve(0.5));
        assert!(!b.try_reserve(0.5), "0.25 spent + 0.5 reserved + 0.5 > 1");
        b.settle(0.5, 0.1);
        assert!(b.try_reserve(0.5), "0.35 spent + 0.5 fits");
        b.settle(0.5, 0.5);
        assert!(!b.try_reserve(0.2), "0.85 + 0.2 > 1");
        assert!(b.try_reserve(0.15));
        let AnalyzeStop::Fatal { kind, detail } = b.exhausted(0.2) else {
            panic!("a budget stop is fatal");
        };
        assert_eq!(kind, FatalKind::BudgetExhausted);
        assert!(detail.contains("max_cost_usd"), "{detail}");
        let mut unlimited = Budget::new(None, 1e9);
        assert!(unlimited.try_reserve(1e9));
    }
}
