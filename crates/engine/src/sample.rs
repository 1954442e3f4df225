//! Sampling: logit bias, penalties, top-k, top-p, min-p, temperature, seeded randomness.
//! The order follows llama.cpp's default sampler chain (penalties → top-k → top-p → min-p →
//! temperature → draw), so the same settings mean the same thing in both.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 (or less) means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables (CTRL-style: positive logits divided, negative multiplied).
    pub repetition_penalty: f32,
    /// OpenAI semantics: subtract presence once and frequency × count for tokens already generated.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at (0 = all).
    pub penalty_last_n: usize,
    pub seed: Option<u64>,
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: None,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// xoshiro256** (Blackman & Vigna 2018), seeded through SplitMix64: small, fast and identical on
/// every platform, so a seed reproduces the same output everywhere.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }
    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A per-request rule on which tokens may come next: JSON schemas, grammars (structured output,
/// implemented over llguidance outside the engine). The scheduler calls `mask` on each step's
/// logits before sampling and `commit` with the chosen token.
pub trait TokenConstraint: Send {
    /// Set the logits of every token the constraint forbids to −∞. An error ends the sequence.
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String>;
    /// Advance past the chosen token. An error ends the sequence.
    fn commit(&mut self, token: u32) -> Result<(), String>;
    /// The constrained output is complete: generation stops with finish reason "stop".
    fn is_finished(&self) -> bool;
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    /// Reused candidate buffer (no allocation per token once warm).
    cand: Vec<(u32, f32)>,
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            use std::time::{SystemTime, UNIX_EPOCH};
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        });
        Sampler {
            params,
            rng: Rng::new(seed),
            cand: Vec::new(),
            counts: HashMap::new(),
        }
    }

    /// Apply bias and penalties to `logits` in place, given the tokens seen so far.
    pub fn adjust(&mut self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        for &(t, b) in &p.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        if p.repetition_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0 {
            return;
        }
        let window = if p.penalty_last_n == 0 {
            history
        } else {
            &history[history.len().saturating_sub(p.penalty_last_n)..]
        };
        self.counts.clear();
        for &t in window {
            *self.counts.entry(t).or_insert(0) += 1;
        }
        for (&t, &c) in &self.counts {
            if let Some(l) = logits.get_mut(t as usize) {
                if p.repetition_penalty != 1.0 {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
                *l -= p.presence_penalty + p.frequency_penalty * c as f32;
            }
        }
    }

    /// Choose the next token. `logits` is modified (bias and penalties applied).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.adjust(logits, history);
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let p = self.params.clone();
        let cand = &mut self.cand;
        cand.clear();
        cand.extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
        // top-k
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            cand.truncate(p.top_k);
        }
        // top-p needs candidates in descending order; sort a growing prefix until it holds the mass.
        let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
        let total: f32 = cand.iter().map(|c| (c.1 - max).exp()).sum();
        if p.top_p < 1.0 {
            let mut k = 64.min(cand.len());
            loop {
                if k < cand.len() {
                    cand.select_nth_unstable_by(k - 1, by_logit);
                }
                cand[..k].sort_unstable_by(by_logit);
                let mut cum = 0.0;
                let mut cut = None;
                for (i, c) in cand[..k].iter().enumerate() {
                    cum += (c.1 - max).exp() / total;
                    if cum >= p.top_p {
                        cut = Some(i + 1);
                        break;
                    }
                }
                if let Some(c) = cut {
                    cand.truncate(c);
                    break;
                }
                if k == cand.len() {
                    break;
                }
                k = (k * 4).min(cand.len());
            }
        }
        // min-p: drop tokens whose probability is below min_p × the top probability.
        if p.min_p > 0.0 {
            let thresh = max + p.min_p.ln();
            cand.retain(|c| c.1 >= thresh);
        }
        // temperature, softmax over the survivors, draw.
        let t = p.temperature;
        let m = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for c in cand.iter_mut() {
            c.1 = ((c.1 - m) / t).exp();
            sum += c.1;
        }
        let mut r = self.rng.next_f32() * sum;
        for c in cand.iter() {
            r -= c.1;
            if r < 0.0 {
                return c.0;
            }
        }
        cand.last().map(|c| c.0).unwrap_or_else(|| argmax(logits))
    }
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    best as u32
}

/// log-softmax of `logits` at `id`, and the `n` most likely tokens with their log-probabilities.
pub fn logprobs(logits: &[f32], id: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let mut top: Vec<(u32, f32)> = Vec::new();
    if n > 0 {
        let mut idx: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        let n = n.min(idx.len());
        idx.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        idx.truncate(n);
        idx.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        top = idx.into_iter().map(|(i, l)| (i, l - lse)).collect();
    }
    (logits[id as usize] - lse, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let mut l = vec![0.1, 3.0, -1.0, 2.9];
        assert_eq!(s.sample(&mut l, &[]), 1);
    }

    #[test]
    fn same_seed_same_choices() {
        let p = SamplingParams {
            seed: Some(42),
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 13) as f32 * 0.3).collect();
        let run = || {
            let mut s = Sampler::new(p.clone());
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // Two tokens with probabilities 0.75 / 0.25 at temperature 1.
        let p = SamplingParams {
            seed: Some(7),
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        let base = [3f32.ln(), 0.0];
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| s.sample(&mut base.to_vec(), &[]) == 1)
            .count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.25).abs() < 0.015, "{frac}");
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_cuts_the_tail() {
        let logits: Vec<f32> = (0..500).map(|i| -(i as f32) * 0.05).collect();
        let mut s = Sampler::new(SamplingParams {
            top_k: 1,
            temperature: 5.0,
            seed: Some(1),
            ..Default::default()
        });
        for _ in 0..100 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
        }
        let mut s = Sampler::new(SamplingParams {
            top_k: 0,
            top_p: 0.5,
            min_p: 0.0,
            temperature: 1.0,
            seed: Some(2),
            ..Default::default()
        });
        // The smallest prefix holding 50% of the mass: compute it independently.
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        let mut cum = 0.0;
        let mut keep = 0;
        for l in &logits {
            cum += l.exp() / z;
            keep += 1;
            if cum >= 0.5 {
                break;
            }
        }
        for _ in 0..2000 {
            assert!((s.sample(&mut logits.clone(), &[]) as usize) < keep);
        }
    }

    #[test]
    fn penalties_follow_openai_semantics() {
        let mut s = Sampler::new(SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            penalty_last_n: 0,
            ..SamplingParams::greedy()
        });
        let mut l = vec![1.0; 4];
        s.adjust(&mut l, &[2, 2, 3]);
        assert_eq!(l, vec![1.0, 1.0, 1.0 - 0.5 - 0.5, 1.0 - 0.5 - 0.25]);
    }

    #[test]
    fn logprobs_are_normalized() {
        let l = vec![1.0, 2.0, 3.0];
        let (lp, top) = logprobs(&l, 2, 3);
        let z: f32 = l.iter().map(|v: &f32| v.exp()).sum();
        assert!((lp - (3f32.exp() / z).ln()).abs() < 1e-5);
        assert_eq!(top[0].0, 2);
        assert_eq!(top.len(), 3);
    }
}
