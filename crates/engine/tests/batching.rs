//! Continuous batching on the real SmolLM2 model: concurrent greedy requests produce exactly
//! what each produces when run alone, cancelled requests stop, and the queue bound holds.

use hearth_engine::scheduler::{
    Event, EventSink, Request, Scheduler, SchedulerConfig, SubmitError,
};
use hearth_engine::{FinishReason, Generator, LoadedModel, SamplingParams};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

fn model() -> Arc<LoadedModel> {
    let dir = std::env::var_os("HEARTH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/models")
        });
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    Arc::new(LoadedModel::load(&p).unwrap())
}

struct ChanSink(mpsc::Sender<Event>, Arc<std::sync::atomic::AtomicBool>);
impl EventSink for ChanSink {
    fn send(&mut self, e: Event) -> bool {
        self.0.send(e).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn request(
    prompt: Vec<u32>,
    max_tokens: usize,
) -> (
    Request,
    mpsc::Receiver<Event>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let (tx, rx) = mpsc::channel();
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = Request {
        prompt,
        params: SamplingParams::greedy(),
        max_tokens,
        logprobs: None,
        constraint: None,
        sink: Box::new(ChanSink(tx, closed.clone())),
    };
    (r, rx, closed)
}

fn collect(rx: &mpsc::Receiver<Event>) -> (Vec<u32>, String, FinishReason) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    loop {
        match rx.recv().unwrap() {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done { finish, .. } => return (ids, text, finish),
            Event::Error(e) => panic!("{e}"),
        }
    }
}

const PROMPTS: &[&str] = &[
    "The quick brown fox",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):",
    "List three colors:",
    "The capital of Japan is",
    "In 1969, astronauts",
    "Water boils at",
    "My favourite book is",
];

#[test]
fn concurrent_greedy_equals_alone() {
    let lm = model();
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|p| lm.tokenizer.encode(p, true, true))
        .collect();
    let n = 24;
    // Alone, one sequence at a time through the single-sequence generator.
    let mut alone = Vec::new();
    {
        let mut g = Generator::new(&lm, 2);
        for p in &prompts {
            g.reset();
            alone.push(
                g.generate(p, &SamplingParams::greedy(), n, &[], |_| true)
                    .unwrap(),
            );
        }
    }
    let sched = Scheduler::start(
        lm.clone(),
        SchedulerConfig {
            threads: 2,
            max_running: 8,
            max_waiting: 64,
            step_tokens: 64,
            ..Default::default()
        },
    );
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (r, rx, _) = request(p.clone(), n);
            sched.submit(r).unwrap();
            rx
        })
        .collect();
    let mut same = 0;
    for (i, rx) in rxs.iter().enumerate() {
        let (ids, text, _) = collect(rx);
        if ids == alone[i].tokens {
            same += 1;
        } else {
            eprintln!("prompt {i}: batched {text:?} vs alone {:?}", alone[i].text);
        }
    }
    assert_eq!(
        same,
        prompts.len(),
        "batched greedy outputs differ from single runs"
    );
}

#[test]
fn cancel_and_queue_bound() {
    let lm = model();
    let sched = Scheduler::start(
        lm.clone(),
        SchedulerConfig {
            threads: 2,
            max_running: 1,
            max_waiting: 2,
            step_tokens: 64,
            ..Default::default()
        },
    );
    // A prose opening: greedy continues it for many tokens (no early end-of-sequence).
    let p = lm.tokenizer.encode(
        "Once upon a time, in a small village by the sea, there lived",
        true,
        true,
    );
    let (r1, rx1, c1) = request(p.clone(), 10_00);
    sched.submit(r1).unwrap();
    // Wait for the first token so r1 is running, then fill the queue.
    assert!(matches!(rx1.recv().unwrap(), Event::Token { .. }));
    let (r2, rx2, _) = request(p.clone(), 4);
    let (r3, _rx3, c3) = request(p.clone(), 4);
    sched.submit(r2).unwrap();
    sched.submit(r3).unwrap();
    let (r4, _, _) = request(p.clone(), 4);
    assert!(matches!(sched.submit(r4), Err(SubmitError::QueueFull(_))));
    // Cancel the running one and a waiting one: the other waiting request then completes.
    c1.store(true, std::sync::atomic::Ordering::Relaxed);
    c3.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ids, _, fin) = collect(&rx2);
    assert_eq!(ids.len(), 4);
    assert_eq!(fin, FinishReason::Length);
    // The cancelled stream ends without a Done (the sender was dropped).
    let mut n = 0;
    while let Ok(e) = rx1.recv() {
        assert!(
            !matches!(e, Event::Done { .. }),
            "cancelled request should not complete"
        );
        n += 1;
        assert!(n < 1000);
    }
    let over = request(p.clone(), 1_000_000).0;
    assert!(matches!(
        sched.submit(over),
        Err(SubmitError::ContextOverflow { .. })
    ));
}
