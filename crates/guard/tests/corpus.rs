//! Guardrail rates on a labelled corpus (issue 7): Chinese and English samples of valid and
//! invalid PRC ID numbers, Luhn-valid and invalid card numbers, mobile numbers, e-mail
//! addresses, injection attempts and benign prompts (hard negatives included). The labels come
//! from `tests/corpus/make_corpus.py` (its own ISO 7064 MOD 11-2 and Luhn code), not from this
//! crate. Prints true/false positives per detector and language (`cargo test -p hearth-guard
//! --test corpus -- --nocapture`); asserts only floors, so the numbers in docs/SECURITY.md are
//! what this prints, not what the asserts allow.

use std::collections::BTreeMap;

use hearth_guard::Guard;

#[derive(Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fn_: u32,
    fp: u32,
    tn: u32,
}

impl Counts {
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fn_).max(1) as f64
    }
    fn fp_rate(&self) -> f64 {
        self.fp as f64 / (self.fp + self.tn).max(1) as f64
    }
}

const DETECTORS: [&str; 5] = [
    "injection",
    "pii:cn_id",
    "pii:bank_card",
    "pii:cn_mobile",
    "pii:email",
];

fn label_kind(label: &str) -> Option<String> {
    match label {
        "none" => None,
        "injection" => Some("injection".into()),
        other => Some(format!("pii:{other}")),
    }
}

#[test]
fn corpus_rates_with_the_default_rules() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/corpus.jsonl");
    let text = std::fs::read_to_string(path).expect("corpus.jsonl (run make_corpus.py)");
    let guard = Guard::new(Guard::default_rules()).unwrap();
    // (detector, lang) -> counts; lang "all" too.
    let mut table: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut misses: Vec<String> = Vec::new();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (sample, label, lang) = (
            v["text"].as_str().unwrap(),
            v["label"].as_str().unwrap(),
            v["lang"].as_str().unwrap(),
        );
        n += 1;
        let verdict = guard.check_input(&[("user", sample)]);
        let fired: Vec<String> = verdict.fired.iter().map(|h| h.kind.name()).collect();
        let expected = label_kind(label);
        for det in DETECTORS {
            let want = expected.as_deref() == Some(det);
            let got = fired.iter().any(|f| f == det);
            for l in [lang, "all"] {
                let c = table.entry((det.to_string(), l.to_string())).or_default();
                match (want, got) {
                    (true, true) => c.tp += 1,
                    (true, false) => c.fn_ += 1,
                    (false, true) => c.fp += 1,
                    (false, false) => c.tn += 1,
                }
            }
            if want != got {
                misses.push(format!(
                    "{} {det}: {sample}",
                    if want { "missed" } else { "false positive" }
                ));
            }
        }
    }
    println!("{n} samples, default rules");
    println!("detector        lang  TP  FN  FP    TN  recall  FP-rate");
    for ((det, lang), c) in &table {
        println!(
            "{det:<15} {lang:<4} {:>3} {:>3} {:>3} {:>5}  {:>5.1}%  {:>5.1}%",
            c.tp,
            c.fn_,
            c.fp,
            c.tn,
            100.0 * c.recall(),
            100.0 * c.fp_rate()
        );
    }
    for m in &misses {
        println!("{m}");
    }
    let all = |det: &str| table[&(det.to_string(), "all".to_string())];
    // Floors only (see the module comment). The checksum detectors must not fire on numbers
    // whose check digit is wrong, and must catch well-formed ones.
    assert!(all("pii:cn_id").recall() >= 0.95, "cn_id recall");
    assert!(all("pii:cn_id").fp <= 2, "cn_id false positives");
    assert!(all("pii:bank_card").recall() >= 0.9, "bank card recall");
    assert!(all("pii:cn_mobile").recall() >= 0.9, "mobile recall");
    assert!(all("pii:email").recall() >= 0.9, "email recall");
    // The patterns are narrow (see docs/SECURITY.md): a floor, not a target.
    assert!(all("injection").recall() >= 0.3, "injection recall");
    assert!(
        all("injection").fp_rate() <= 0.1,
        "injection false-positive rate"
    );
}
