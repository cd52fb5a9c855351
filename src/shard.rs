//! Shards: which of N `serve` processes runs a journey.
//!
//! Rendezvous (highest-random-weight) hashing on the journey name: each shard
//! index `i` gives a journey the weight `SHA-256(name \0 i)` (first 8 bytes,
//! big-endian) and the journey goes to the index with the highest weight.
//! A journey's weight for index `i` does not depend on N, so going from N to
//! N+1 shards moves only the journeys that the new index wins (about 1/(N+1)
//! of them), and every other journey stays where it was. SHA-256 (not std's
//! randomly seeded hasher) gives the same answer in every process, version and
//! machine, which is what lets N processes agree without talking.
//!
//! Series of different shards are told apart by the scrape's `instance` (and
//! `pod`) label, never by a label of wayprobe's own: a journey that moves to
//! another shard keeps its `journey`/`location` series identity, and the
//! generated rules aggregate those target labels away.

use std::fmt;
use std::str::FromStr;

/// One shard of N: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// This process's index, `0..count`.
    pub index: u32,
    /// How many shards share the journeys.
    pub count: u32,
}

/// A `--shard` value that is not `I/N` with `0 <= I < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not two numbers around a slash.
    #[error("`{0}` is not INDEX/COUNT; write e.g. `0/3` (the first of three shards)")]
    Syntax(String),
    /// Zero shards.
    #[error("`{0}`: the shard count must be at least 1")]
    NoShards(String),
    /// Index past the count.
    #[error(
        "`{0}`: the index counts from 0, so it must be below the count (`{1}/{2}` is the last)"
    )]
    Index(String, u32, u32),
    /// Too many shards to be meant.
    #[error("`{0}`: at most {max} shards", max = Shard::MAX)]
    TooMany(String),
}

impl Shard {
    /// The most shards supported (a bound against typos such as `1/30000`).
    pub const MAX: u32 = 10_000;

    /// The whole set: one process runs everything.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this shard runs the journey named `name`.
    pub fn owns(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || ShardError::Syntax(s.to_string());
        let (i, n) = s.trim().split_once('/').ok_or_else(syntax)?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u32>()
                .ok()
                .filter(|_| x.trim().bytes().all(|b| b.is_ascii_digit()))
        };
        let (index, count) = (parse(i).ok_or_else(syntax)?, parse(n).ok_or_else(syntax)?);
        if count == 0 {
            return Err(ShardError::NoShards(s.to_string()));
        }
        if count > Shard::MAX {
            return Err(ShardError::TooMany(s.to_string()));
        }
        if index >= count {
            return Err(ShardError::Index(s.to_string(), count - 1, count));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The weight of journey `name` on shard `index`: the first 8 bytes of
/// `SHA-256(name || 0x00 || index as 4 big-endian bytes)`.
pub fn weight(name: &str, index: u32) -> u64 {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[0]);
    ctx.update(&index.to_be_bytes());
    let d = ctx.finish();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(b)
}

/// The shard (`0..count`) that runs journey `name`: the highest weight, ties
/// to the lower index. `count` 0 is treated as 1.
pub fn owner(name: &str, count: u32) -> u32 {
    (0..count.max(1))
        .max_by_key(|&i| (weight(name, i), std::cmp::Reverse(i)))
        .unwrap_or(0)
}

/// How a set of journeys falls on N shards, for `wayprobe check --shards`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Per shard, in index order: the names of its journeys (sorted).
    pub journeys: Vec<Vec<String>>,
    /// Per shard: expected journey runs per second (sum of 1/interval).
    pub runs_per_second: Vec<f64>,
}

impl Assignment {
    /// Assigns `(name, interval)` pairs to `count` shards.
    pub fn of<'a>(
        journeys: impl IntoIterator<Item = (&'a str, std::time::Duration)>,
        count: u32,
    ) -> Self {
        let n = count.max(1) as usize;
        let mut a = Assignment {
            journeys: vec![Vec::new(); n],
            runs_per_second: vec![0.0; n],
        };
        for (name, interval) in journeys {
            let i = owner(name, count) as usize;
            a.journeys[i].push(name.to_string());
            if !interval.is_zero() {
                a.runs_per_second[i] += 1.0 / interval.as_secs_f64();
            }
        }
        for j in &mut a.journeys {
            j.sort();
        }
        a
    }

    /// The busiest shard's runs per second over the mean (1.0 = even);
    /// 0 when nothing runs.
    pub fn imbalance(&self) -> f64 {
        let total: f64 = self.runs_per_second.iter().sum();
        if total == 0.0 {
            return 0.0;
        }
        let mean = total / self.runs_per_second.len() as f64;
        self.runs_per_second.iter().cloned().fold(0.0, f64::max) / mean
    }

    /// The table `check --shards` prints: one line per shard, then the balance.
    pub fn render(&self) -> String {
        let total: usize = self.journeys.iter().map(Vec::len).sum();
        let n = self.journeys.len();
        let mut out = format!("{total} journeys on {n} shards (rendezvous hashing on the name):\n");
        for (i, (js, rps)) in self.journeys.iter().zip(&self.runs_per_second).enumerate() {
            let shown: Vec<&str> = js.iter().take(5).map(String::as_str).collect();
            let more = if js.len() > shown.len() {
                format!(", … {} more", js.len() - shown.len())
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  shard {i}/{n}: {:>5} journeys, {rps:.3} runs/s{}{}{more}\n",
                js.len(),
                if js.is_empty() { "" } else { ": " },
                shown.join(", "),
            ));
        }
        out.push_str(&format!(
            "balance: the busiest shard makes {:.2}x the mean runs/s\n",
            self.imbalance()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("journey-{i:04}")).collect()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!("0/1".parse(), Ok(Shard::ALL));
        assert_eq!(Shard { index: 2, count: 4 }.to_string(), "2/4");
        for bad in ["", "1", "a/3", "1/b", "-1/3", "+1/3", "1/3/4"] {
            assert!(
                matches!(bad.parse::<Shard>(), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "3/3".parse::<Shard>().unwrap_err().to_string(),
            "`3/3`: the index counts from 0, so it must be below the count (`2/3` is the last)"
        );
        assert!(matches!(
            "0/0".parse::<Shard>(),
            Err(ShardError::NoShards(_))
        ));
        assert!(matches!(
            "0/10001".parse::<Shard>(),
            Err(ShardError::TooMany(_))
        ));
    }

    #[test]
    fn weights_are_stable_across_processes() {
        // Fixed values: a change of hash or encoding would move every journey
        // of every deployed fleet, so it must be a deliberate one.
        assert_eq!(weight("checkout", 0), 0xbdeb_88c4_0fe0_74b8);
        let owners: Vec<u32> = ["checkout", "login", "search"]
            .iter()
            .map(|n| owner(n, 3))
            .collect();
        assert_eq!(owners, [0, 1, 1]);
    }

    #[test]
    fn three_to_four_moves_at_most_a_third_and_only_to_the_new_shard() {
        let js = names(1000);
        let moved: Vec<&String> = js.iter().filter(|n| owner(n, 3) != owner(n, 4)).collect();
        assert!(moved.len() <= 1000 / 3, "{} moved", moved.len());
        assert!(moved.len() >= 150, "about a quarter moves: {}", moved.len());
        assert!(
            moved.iter().all(|n| owner(n, 4) == 3),
            "a journey moves only to the new shard"
        );
    }

    #[test]
    fn no_shard_gets_more_than_1_2_times_its_share() {
        let js = names(1000);
        for n in [2u32, 3, 4, 5, 6] {
            let a = Assignment::of(js.iter().map(|s| (s.as_str(), Duration::from_secs(30))), n);
            let share = 1000.0 / f64::from(n);
            for (i, j) in a.journeys.iter().enumerate() {
                assert!(
                    (j.len() as f64) <= 1.2 * share,
                    "{n} shards: shard {i} has {} of 1000",
                    j.len()
                );
            }
            assert_eq!(a.journeys.iter().map(Vec::len).sum::<usize>(), 1000);
            assert!(a.imbalance() <= 1.2, "{}", a.imbalance());
        }
    }

    #[test]
    fn every_journey_has_exactly_one_owner() {
        for name in names(50) {
            let owners: Vec<u32> = (0..3)
                .filter(|&i| Shard { index: i, count: 3 }.owns(&name))
                .collect();
            assert_eq!(owners.len(), 1, "{name}");
            assert!(Shard::ALL.owns(&name));
        }
    }

    #[test]
    fn renders_the_balance() {
        let a = Assignment::of(
            [
                ("a", Duration::from_secs(10)),
                ("b", Duration::from_secs(30)),
                ("c", Duration::from_secs(60)),
            ],
            2,
        );
        let text = a.render();
        assert!(text.starts_with("3 journeys on 2 shards"), "{text}");
        assert!(
            text.contains("shard 0/2:") && text.contains("shard 1/2:"),
            "{text}"
        );
        assert!(text.contains("balance: the busiest shard makes"), "{text}");
    }
}
