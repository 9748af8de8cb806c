//! Quantization quality guard, the scoring half: how far a variant's greedy answers drift from
//! the highest-precision variant's, and how many known answers it still gets right.
//!
//! Pure functions over answer texts. Running the prompts against servers is the daemon's job.
//! Tokens here are whitespace-separated words, lower-cased with surrounding punctuation
//! stripped: the client has no tokenizer, and word overlap is what a reader notices.

use serde::{Deserialize, Serialize};

/// A variant's quality figures, stored with its trial.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct QualityScore {
    /// Mean token-level agreement (ROUGE-L F1) with the reference variant's answers, 0..1.
    pub agreement: f64,
    /// Fraction of known-answer prompts answered correctly, 0..1; `None` without any.
    pub exact_match: Option<f64>,
    /// Prompts compared with the reference.
    pub n_compared: usize,
    /// Known-answer prompts scored.
    pub n_known: usize,
}

/// Normalised word tokens of an answer.
pub fn tokens(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Length of the longest common subsequence of two token lists (O(n·m), answers are short).
fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

/// Token-level agreement of two answers: ROUGE-L F1 = 2·LCS / (|a| + |b|). Two empty answers
/// agree fully.
pub fn token_agreement(a: &str, b: &str) -> f64 {
    let (a, b) = (tokens(a), tokens(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * lcs(&a, &b) as f64 / (a.len() + b.len()) as f64
}

/// Whether `answer` contains one of the accepted spellings as whole words, ignoring case
/// (the rule stated in `scripts/gen_prompts.py`).
pub fn is_correct(answer: &str, accept: &[String]) -> bool {
    let words = tokens(answer);
    accept.iter().any(|spelling| {
        let want = tokens(spelling);
        !want.is_empty() && words.windows(want.len()).any(|w| w == want.as_slice())
    })
}

/// Score a variant: `outputs[i]` against `reference[i]` (pairs where either failed are
/// skipped), and `known` = (answer, accepted spellings) pairs.
pub fn score(
    outputs: &[Option<String>],
    reference: &[Option<String>],
    known: &[(Option<String>, Vec<String>)],
) -> QualityScore {
    let pairs: Vec<f64> = outputs
        .iter()
        .zip(reference)
        .filter_map(|(o, r)| Some(token_agreement(o.as_deref()?, r.as_deref()?)))
        .collect();
    let correct =
        known.iter().filter(|(answer, accept)| answer.as_deref().is_some_and(|a| is_correct(a, accept))).count();
    QualityScore {
        agreement: if pairs.is_empty() { 0.0 } else { pairs.iter().sum::<f64>() / pairs.len() as f64 },
        exact_match: (!known.is_empty()).then(|| correct as f64 / known.len() as f64),
        n_compared: pairs.len(),
        n_known: known.len(),
    }
}

/// Rank of a quantization name by precision (higher = more precise): F32 > BF16/F16 > Q8 > Q6 >
/// Q5 > Q4 > Q3 > Q2; within a bit width, `_1`/`_K` variants above `_0`. Unknown names rank 0.
pub fn precision_rank(name: &str) -> u32 {
    let n = name.to_ascii_uppercase();
    if n.contains("F32") {
        return 1000;
    }
    if n.contains("BF16") || n.contains("F16") {
        return 900;
    }
    let Some(pos) = n.find('Q') else { return 0 };
    let digits: String = n[pos + 1..].chars().take_while(char::is_ascii_digit).collect();
    let Ok(bits) = digits.parse::<u32>() else { return 0 };
    let rest = &n[pos + 1 + digits.len()..];
    let finer = if rest.starts_with("_0") { 0 } else { 1 };
    bits * 10 + finer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_exact_values() {
        assert_eq!(token_agreement("The cat sat.", "the cat sat"), 1.0);
        // LCS("a b c d", "a x c d") = 3 → 2·3/8
        assert_eq!(token_agreement("a b c d", "a x c d"), 0.75);
        assert_eq!(token_agreement("", ""), 1.0);
        assert_eq!(token_agreement("a", ""), 0.0);
        // LCS("a b c", "c b a") = 1 → 2/6
        assert!((token_agreement("a b c", "c b a") - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn known_answers_match_whole_words() {
        let accept = vec!["Paris".to_string()];
        assert!(is_correct("The capital is paris.", &accept));
        assert!(!is_correct("Parisian food", &accept));
        assert!(is_correct("It is New York.", &["new york".to_string()]));
    }

    #[test]
    fn score_skips_failed_pairs() {
        let out = vec![Some("a b".to_string()), None, Some("x".to_string())];
        let reference = vec![Some("a b".to_string()), Some("q".to_string()), Some("y".to_string())];
        let known = vec![(Some("Paris".to_string()), vec!["paris".to_string()]), (None, vec!["rome".to_string()])];
        let s = score(&out, &reference, &known);
        assert_eq!(s.n_compared, 2);
        assert_eq!(s.agreement, 0.5);
        assert_eq!(s.exact_match, Some(0.5));
    }

    #[test]
    fn precision_ranks_order_variants() {
        let mut v = vec!["Q4_0", "F16", "Q8_0", "Q4_1", "Q4_K_M", "F32"];
        v.sort_by_key(|n| std::cmp::Reverse(precision_rank(n)));
        assert_eq!(v, ["F32", "F16", "Q8_0", "Q4_1", "Q4_K_M", "Q4_0"]);
    }
}
