//! The metric vocabulary: [`Metric`], one variant per figure an objective, an SLO, a capacity
//! search or `trials --sort` can name, with its name, unit, definition, better direction and
//! how it is read off a [`Summary`].
//!
//! Names are text only at the boundaries (search-space files, JSON, the store's columns and
//! `objective_metric`, CLI arguments); inside, code passes `Metric`. The names are the ones
//! stored in databases and landscape files, so they never change. Which metrics a study may
//! optimise or bound is `space`'s policy, not this module's. See issue 14.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Summary;
use super::ratio::Better;

/// A named figure of one trial's [`Summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    TtftP50Ms,
    TtftP95Ms,
    TtftP99Ms,
    TpotP50Ms,
    TpotP95Ms,
    ItlP50Ms,
    ItlP95Ms,
    E2eP50Ms,
    E2eP95Ms,
    OutputTokPerS,
    ReqPerS,
    SuccessRate,
    GoodputRps,
    PeakRssMb,
    PeakRssBytes,
    DecodeAgreement,
    QualityAgreement,
    QualityExactMatch,
    PeakVramMb,
    Capacity,
}

use Metric::*;

const MIB: f64 = 1024.0 * 1024.0;

impl Metric {
    /// Every metric, in the order `Summary::metric` listed them before issue 14.
    pub const ALL: &'static [Metric] = &[
        TtftP50Ms,
        TtftP95Ms,
        TtftP99Ms,
        TpotP50Ms,
        TpotP95Ms,
        ItlP50Ms,
        ItlP95Ms,
        E2eP50Ms,
        E2eP95Ms,
        OutputTokPerS,
        ReqPerS,
        SuccessRate,
        GoodputRps,
        PeakRssMb,
        PeakRssBytes,
        DecodeAgreement,
        QualityAgreement,
        QualityExactMatch,
        PeakVramMb,
        Capacity,
    ];

    /// The name used in space files, JSON, the store and the CLI (e.g. `ttft_p95_ms`).
    pub fn name(self) -> &'static str {
        match self {
            TtftP50Ms => "ttft_p50_ms",
            TtftP95Ms => "ttft_p95_ms",
            TtftP99Ms => "ttft_p99_ms",
            TpotP50Ms => "tpot_p50_ms",
            TpotP95Ms => "tpot_p95_ms",
            ItlP50Ms => "itl_p50_ms",
            ItlP95Ms => "itl_p95_ms",
            E2eP50Ms => "e2e_p50_ms",
            E2eP95Ms => "e2e_p95_ms",
            OutputTokPerS => "output_tok_per_s",
            ReqPerS => "req_per_s",
            SuccessRate => "success_rate",
            GoodputRps => "goodput_rps",
            PeakRssMb => "peak_rss_mb",
            PeakRssBytes => "peak_rss_bytes",
            DecodeAgreement => "decode_agreement",
            QualityAgreement => "quality_agreement",
            QualityExactMatch => "quality_exact_match",
            PeakVramMb => "peak_vram_mb",
            Capacity => "capacity",
        }
    }

    /// The metric with this name, or one of the aliases space files accept (`goodput`,
    /// `throughput`, `tok_per_s`); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Metric> {
        let name = match name {
            "goodput" => "goodput_rps",
            "throughput" | "tok_per_s" => "output_tok_per_s",
            other => other,
        };
        Metric::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// The unit of [`Metric::value`].
    pub fn unit(self) -> &'static str {
        match self {
            TtftP50Ms | TtftP95Ms | TtftP99Ms | TpotP50Ms | TpotP95Ms | ItlP50Ms | ItlP95Ms | E2eP50Ms | E2eP95Ms => {
                "ms"
            }
            OutputTokPerS => "tokens/s",
            ReqPerS | GoodputRps => "requests/s",
            SuccessRate | QualityAgreement | QualityExactMatch => "fraction",
            DecodeAgreement => "ratio",
            PeakRssMb | PeakVramMb => "MiB",
            PeakRssBytes => "bytes",
            Capacity => "clients or requests/s",
        }
    }

    /// How the figure is measured: the wording of [`super::DEFINITIONS`] for its family.
    pub fn definition(self) -> &'static str {
        let family = match self {
            TtftP50Ms | TtftP95Ms | TtftP99Ms => "ttft",
            TpotP50Ms | TpotP95Ms => "tpot",
            ItlP50Ms | ItlP95Ms => "itl",
            E2eP50Ms | E2eP95Ms => "e2e",
            PeakRssMb | PeakRssBytes => "peak_rss_bytes",
            PeakVramMb => "peak_vram_bytes",
            other => other.name(),
        };
        super::definition(family).expect("DEFINITIONS has every metric's family (tested)")
    }

    /// Which way is better; `None` for the client/server cross-check ratio, best at 1.0.
    pub fn better(self) -> Option<Better> {
        match self {
            TtftP50Ms | TtftP95Ms | TtftP99Ms | TpotP50Ms | TpotP95Ms | ItlP50Ms | ItlP95Ms | E2eP50Ms | E2eP95Ms
            | PeakRssMb | PeakRssBytes | PeakVramMb => Some(Better::Lower),
            OutputTokPerS | ReqPerS | SuccessRate | GoodputRps | QualityAgreement | QualityExactMatch | Capacity => {
                Some(Better::Higher)
            }
            DecodeAgreement => None,
        }
    }

    /// The figure in `summary`, in [`Metric::unit`]; `None` when the trial did not measure it
    /// (no server timings, no quality guard, no GPU, no capacity search).
    pub fn value(self, summary: &Summary) -> Option<f64> {
        let s = summary;
        Some(match self {
            TtftP50Ms => s.ttft_ms.p50,
            TtftP95Ms => s.ttft_ms.p95,
            TtftP99Ms => s.ttft_ms.p99,
            TpotP50Ms => s.tpot_ms.p50,
            TpotP95Ms => s.tpot_ms.p95,
            ItlP50Ms => s.itl_ms.p50,
            ItlP95Ms => s.itl_ms.p95,
            E2eP50Ms => s.e2e_ms.p50,
            E2eP95Ms => s.e2e_ms.p95,
            OutputTokPerS => s.output_tok_per_s,
            ReqPerS => s.req_per_s,
            SuccessRate => s.success_rate,
            GoodputRps => s.goodput_rps,
            PeakRssMb => s.peak_rss_bytes as f64 / MIB,
            PeakRssBytes => s.peak_rss_bytes as f64,
            DecodeAgreement => return s.decode_agreement,
            QualityAgreement => return s.quality.map(|q| q.agreement),
            QualityExactMatch => return s.quality.and_then(|q| q.exact_match),
            PeakVramMb => s.peak_vram_bytes? as f64 / MIB,
            Capacity => return s.capacity.as_ref().map(|c| c.value),
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// As its name, so stored summaries and JSON read the same as before the type existed.
impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metric, D::Error> {
        let name = String::deserialize(deserializer)?;
        Metric::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown metric '{name}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Dist;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(*m));
            assert_eq!(serde_json::to_string(m).unwrap(), format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<Metric>(&format!("\"{m}\"")).unwrap(), *m);
        }
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
    }

    #[test]
    fn aliases_and_unknown_names() {
        assert_eq!(Metric::from_name("goodput"), Some(GoodputRps));
        assert_eq!(Metric::from_name("throughput"), Some(OutputTokPerS));
        assert_eq!(Metric::from_name("tok_per_s"), Some(OutputTokPerS));
        assert_eq!(Metric::from_name("ttft"), None);
        assert!(serde_json::from_str::<Metric>("\"ttft\"").is_err());
    }

    #[test]
    fn every_metric_has_a_definition_and_a_unit() {
        for m in Metric::ALL {
            assert!(!m.definition().is_empty() && !m.unit().is_empty(), "{m}");
        }
        assert_eq!(TtftP95Ms.definition(), super::super::definition("ttft").unwrap());
    }

    #[test]
    fn latencies_lower_is_better_rates_higher() {
        assert_eq!(TtftP95Ms.better(), Some(Better::Lower));
        assert_eq!(PeakRssBytes.better(), Some(Better::Lower));
        assert_eq!(GoodputRps.better(), Some(Better::Higher));
        assert_eq!(SuccessRate.better(), Some(Better::Higher));
    }

    #[test]
    fn values_read_the_summary() {
        let s = Summary {
            ttft_ms: Dist { p95: 120.0, ..Default::default() },
            peak_rss_bytes: 3 << 20,
            goodput_rps: 1.5,
            ..Default::default()
        };
        assert_eq!(TtftP95Ms.value(&s), Some(120.0));
        assert_eq!(PeakRssMb.value(&s), Some(3.0));
        assert_eq!(PeakRssBytes.value(&s), Some(f64::from(3 << 20)));
        assert_eq!(GoodputRps.value(&s), Some(1.5));
        assert_eq!(PeakVramMb.value(&s), None);
        assert_eq!(DecodeAgreement.value(&s), None);
        assert_eq!(Capacity.value(&s), None);
    }
}
