//! Statistical disclosure control for planner-facing counts, after NHS England's guidance for
//! published statistics: small counts are suppressed, every count is rounded, and a suppressed
//! cell is protected by a second suppression wherever a total would otherwise give it back.

/// A protected count as published: `*` when suppressed.
pub fn shown(n: Option<u64>) -> String {
    n.map_or_else(|| "*".to_string(), |n| n.to_string())
}

/// The rule applied to every published count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disclosure {
    /// Counts from 1 to this are suppressed (0 is published: it reveals no one).
    pub suppress_up_to: u64,
    /// Published counts are rounded to the nearest multiple of this (1: not rounded).
    pub round_to: u64,
}

impl Default for Disclosure {
    /// Counts of 1-7 suppressed, all counts rounded to the nearest 5.
    fn default() -> Self {
        Self { suppress_up_to: 7, round_to: 5 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("disclosure rule `{setting}`: {reason}")]
pub struct RuleError {
    pub setting: &'static str,
    pub reason: &'static str,
}

impl Disclosure {
    /// Refuses a rule no count could be published under (rounding to multiples of 0). A rule of
    /// no suppression and no rounding is allowed, and says so wherever it is stated.
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.round_to == 0 {
            return Err(RuleError { setting: "round_to", reason: "must be at least 1 (1: no rounding)" });
        }
        Ok(())
    }

    /// The rule in words, stated beside every output it protects.
    pub fn describe(&self) -> String {
        if self.suppress_up_to == 0 && self.round_to == 1 {
            return "none: exact counts, not for publication".to_string();
        }
        let mut rule = if self.suppress_up_to == 0 {
            "no small counts suppressed".to_string()
        } else {
            format!(
                "counts of 1 to {} suppressed (shown as *), with secondary suppression wherever a total would reveal one",
                self.suppress_up_to
            )
        };
        if self.round_to > 1 {
            rule += &format!("; every count rounded to the nearest {}", self.round_to);
        }
        rule
    }

    fn is_small(&self, count: u64) -> bool {
        (1..=self.suppress_up_to).contains(&count)
    }

    /// Rounds a published count to the nearest multiple of `round_to` (halves up).
    pub fn round(&self, count: u64) -> u64 {
        let r = self.round_to;
        (count + r / 2) / r * r
    }

    /// Protects a table of counts `cells[i][j]` (groups by categories) published with its row
    /// totals, column totals and grand total. Small counts are suppressed; then, until nothing
    /// changes, every line (a row or a column, against its total) is closed: a suppressed total
    /// takes its line's non-zero cells with it (they would add up to it), and a line with exactly
    /// one suppressed cell (its total would give it back) has its smallest other non-zero cell
    /// suppressed too, or, when it has none, its total.
    pub fn protect(&self, cells: &[Vec<u64>]) -> Protected {
        self.protect_with(cells, &vec![false; cells.len()])
    }

    /// [`Disclosure::protect`], with the rows `hidden_rows` marks suppressed whatever their counts
    /// (groups suppressed in another table of the same groups).
    pub fn protect_with(&self, cells: &[Vec<u64>], hidden_rows: &[bool]) -> Protected {
        let (rows, cols) = (cells.len(), cells.first().map_or(0, Vec::len));
        // The table with its margins: row `rows` holds the column totals, column `cols` the row
        // totals, and their corner the grand total.
        let mut grid = vec![vec![0u64; cols + 1]; rows + 1];
        for (i, row) in cells.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                grid[i][j] = c;
                grid[i][cols] += c;
                grid[rows][j] += c;
                grid[rows][cols] += c;
            }
        }
        let mut hidden: Vec<Vec<bool>> = grid.iter().map(|r| r.iter().map(|&c| self.is_small(c)).collect()).collect();
        for (i, _) in hidden_rows.iter().enumerate().filter(|(_, h)| **h) {
            hidden[i][cols] = true;
        }
        // Each line: its members' places and its total's place.
        let mut lines: Vec<(Vec<Place>, Place)> = Vec::new();
        for i in 0..=rows {
            lines.push(((0..cols).map(|j| (i, j)).collect(), (i, cols)));
        }
        for j in 0..=cols {
            lines.push(((0..rows).map(|i| (i, j)).collect(), (rows, j)));
        }
        loop {
            let mut changed = false;
            for (members, total) in &lines {
                // A suppressed total hides zeros too: a row of `*, 0, 0` would say what everyone
                // in it has.
                let to_hide: Vec<(usize, usize)> = if hidden[total.0][total.1] {
                    members.iter().copied().filter(|&(i, j)| !hidden[i][j]).collect()
                } else if members.iter().filter(|&&(i, j)| hidden[i][j]).count() == 1 {
                    let other = members
                        .iter()
                        .copied()
                        .filter(|&(i, j)| !hidden[i][j] && grid[i][j] > 0)
                        .min_by_key(|&(i, j)| grid[i][j]);
                    vec![other.unwrap_or(*total)]
                } else {
                    Vec::new()
                };
                for (i, j) in to_hide {
                    hidden[i][j] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let publish = |i: usize, j: usize| (!hidden[i][j]).then(|| self.round(grid[i][j]));
        Protected {
            cells: (0..rows).map(|i| (0..cols).map(|j| publish(i, j)).collect()).collect(),
            row_totals: (0..rows).map(|i| publish(i, cols)).collect(),
            column_totals: (0..cols).map(|j| publish(rows, j)).collect(),
            total: publish(rows, cols),
        }
    }
}

/// A cell's row and column in the table with its margins.
type Place = (usize, usize);

/// A table as published: `None` where a count is suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Protected {
    pub cells: Vec<Vec<Option<u64>>>,
    pub row_totals: Vec<Option<u64>>,
    pub column_totals: Vec<Option<u64>>,
    pub total: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No published line leaves one cell to be worked out from its total, and no suppressed
    /// total can be worked out from its published cells.
    fn no_cell_recoverable(p: &Protected) {
        let columns = (0..p.column_totals.len()).map(|j| (p.cells.iter().map(|r| r[j]).collect(), p.column_totals[j]));
        let lines: Vec<(Vec<Option<u64>>, Option<u64>)> = p
            .cells
            .iter()
            .cloned()
            .zip(p.row_totals.iter().copied())
            .chain(columns)
            .chain([(p.column_totals.clone(), p.total), (p.row_totals.clone(), p.total)])
            .collect();
        for (members, total) in lines {
            match total {
                Some(_) => assert_ne!(members.iter().filter(|c| c.is_none()).count(), 1, "{members:?} of {total:?}"),
                None => assert!(members.iter().all(Option::is_none), "{members:?}"),
            }
        }
    }

    #[test]
    fn small_counts_are_suppressed_rounded_and_protected_from_their_totals() {
        let rule = Disclosure::default();
        // Three groups by three bands: group 0 has a 3 in one band, group 2 six people in all.
        let cells = vec![vec![120, 3, 40], vec![200, 60, 31], vec![5, 0, 1]];
        let p = rule.protect(&cells);
        no_cell_recoverable(&p);
        assert_eq!(p.cells[0][1], None, "primary");
        assert_eq!(p.cells[0][2], None, "secondary: the smallest other cell of its row");
        assert_eq!(p.row_totals[2], None, "a group of 6 people is suppressed");
        assert_eq!(p.cells[2], vec![None, None, None], "its cells go with it, zeros too");
        // Every published count is a multiple of 5 and within 2 of the truth.
        for (row, truth) in p.cells.iter().zip(&cells) {
            for (c, t) in row.iter().zip(truth) {
                if let Some(c) = c {
                    assert!(c % 5 == 0 && c.abs_diff(*t) <= 2, "{c} for {t}");
                }
            }
        }
        // The grand total less group 1 would give group 2's six back: group 0 (the smaller) goes too.
        assert_eq!((p.row_totals[0], p.row_totals[1], p.total), (None, Some(290), Some(460)));
    }

    #[test]
    fn no_suppressed_count_can_be_recovered_on_random_tables() {
        let rule = Disclosure::default();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        for _ in 0..2000 {
            let (rows, cols) = (1 + next(6) as usize, 1 + next(4) as usize);
            let cells: Vec<Vec<u64>> =
                (0..rows).map(|_| (0..cols).map(|_| if next(3) == 0 { next(9) } else { next(60) }).collect()).collect();
            let p = rule.protect(&cells);
            no_cell_recoverable(&p);
            for (row, truth) in p.cells.iter().zip(&cells) {
                for (c, t) in row.iter().zip(truth) {
                    assert!(c.is_none() || !(1..=7).contains(t), "small counts never published");
                }
            }
        }
    }

    #[test]
    fn the_rule_is_checked_and_stated() {
        // Groups suppressed elsewhere are suppressed here, and their lines closed.
        let p = Disclosure::default().protect_with(&[vec![40, 60], vec![30, 20], vec![25, 25]], &[false, true, false]);
        assert_eq!((p.row_totals.clone(), p.cells[1].clone()), (vec![Some(100), None, None], vec![None, None]));
        no_cell_recoverable(&p);
        assert!(Disclosure { suppress_up_to: 0, round_to: 1 }.describe().starts_with("none"));
        assert!(Disclosure { suppress_up_to: 7, round_to: 0 }.validate().is_err());
        let text = Disclosure::default().describe();
        assert!(text.contains("1 to 7") && text.contains("nearest 5"), "{text}");
        assert_eq!(Disclosure { suppress_up_to: 0, round_to: 1 }.round(13), 13);
        assert_eq!(Disclosure::default().round(12), 10);
        assert_eq!(Disclosure::default().round(13), 15);
    }
}
