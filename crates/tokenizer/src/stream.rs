//! Streaming detokenization that never splits a UTF-8 sequence.

use crate::Tokenizer;

/// Feed token ids one at a time and get text back as soon as it is complete UTF-8.
///
/// The text is the concatenation of each token's piece (llama.cpp's per-token
/// `token_to_piece`, which is what its server streams); bytes of a multi-byte character
/// split across tokens are held back until the character is complete. Bytes that can
/// never become valid UTF-8 are emitted as U+FFFD. [`StreamDecoder::flush`] returns
/// whatever is still held (lossily).
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    skip_special: bool,
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// `skip_special`: control/unknown tokens produce no text.
    pub fn new(skip_special: bool) -> Self {
        StreamDecoder {
            skip_special,
            pending: Vec::new(),
        }
    }

    /// Add one token; returns the text that became complete.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        tok.append_piece(&mut self.pending, id, false, !self.skip_special);
        self.drain_complete()
    }

    /// Return everything still held back (incomplete sequences become U+FFFD).
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    fn drain_complete(&mut self) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: the prefix is valid per `valid_up_to`.
                    out.push_str(std::str::from_utf8(&self.pending[start..start + valid]).unwrap());
                    start += valid;
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => break,
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start += bad;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}
