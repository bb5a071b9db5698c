//! The scanner: walks text left to right, takes the leftmost match no later byte can change,
//! applies its rule (block, mask, audit; allow and restore), and passes on everything before
//! the first position where a match may still be completing. A whole text is one push at end
//! of input; a stream is many pushes, then [`TextScan::finish`]. Because a match is only acted
//! on once it is decided, both give the same hits and the same output for any split.

use super::matcher::{Candidate, SideCache, SideMatcher, Target, MAX_PARTS};
use super::{Action, Blocked, Profile, ScanScratch, Session, Side};

/// Scans one text field of one side: a whole string, or a stream of deltas (one choice's
/// content, one tool call's arguments).
#[derive(Debug)]
pub struct TextScan {
    side: Side,
    /// The last character already passed on (look-behind for `\b` and whole words), then the
    /// text not yet passed on.
    buf: String,
    /// Where the text not yet passed on starts in `buf`.
    resume: usize,
    /// Per matcher part: start positions below this are known never to begin a match.
    settled: Vec<usize>,
}

/// Where scanned text goes: always (streams), or only once something is rewritten (whole
/// texts, which stay unchanged almost always).
struct Emit<'o> {
    out: &'o mut String,
    lazy: bool,
    started: bool,
}

impl Emit<'_> {
    fn text(&mut self, text: &str) {
        if !self.lazy || self.started {
            self.out.push_str(text);
        }
    }

    /// Called before writing something other than the input: in lazy mode, copies what
    /// was passed over so far (`done`) first.
    fn rewrite(&mut self, done: &str) -> &mut String {
        if self.lazy && !self.started {
            self.out.push_str(done);
            self.started = true;
        }
        self.out
    }
}

// === impl TextScan ===

impl TextScan {
    /// A scanner for text going to (`Input`) or coming from (`Output`) the model.
    pub fn new(side: Side) -> Self {
        TextScan {
            side,
            buf: String::new(),
            resume: 0,
            settled: Vec::new(),
        }
    }

    /// Text received but not yet passed on (at most the profile's hold-back for this side).
    pub fn held(&self) -> usize {
        self.buf.len() - self.resume
    }

    /// Scans a complete text in one go. Returns whether it was rewritten; if so, `out` holds
    /// the new text (appended), else `out` is untouched.
    pub fn scan_whole(
        &mut self,
        profile: &Profile,
        text: &str,
        session: &mut Session,
        scratch: &mut ScanScratch,
        out: &mut String,
    ) -> Result<bool, Blocked> {
        let matcher = profile.matcher(self.side);
        let cache = profile.cache(self.side, scratch);
        // At end of input nothing is pending: `settled` is not used.
        let mut emit = Emit {
            out,
            lazy: true,
            started: false,
        };
        self.run(profile, matcher, cache, text, 0, true, session, &mut emit)?;
        Ok(emit.started)
    }

    /// Adds the next piece of a stream and appends to `out` what can be passed on: the text,
    /// with masked values replaced and placeholders restored, up to the first position where
    /// a match may still be completing.
    pub fn push(
        &mut self,
        profile: &Profile,
        text: &str,
        session: &mut Session,
        scratch: &mut ScanScratch,
        out: &mut String,
    ) -> Result<(), Blocked> {
        self.step(profile, text, false, session, scratch, out)
    }

    /// Ends the stream: decides what was held back and appends it to `out`.
    pub fn finish(
        &mut self,
        profile: &Profile,
        session: &mut Session,
        scratch: &mut ScanScratch,
        out: &mut String,
    ) -> Result<(), Blocked> {
        self.step(profile, "", true, session, scratch, out)
    }

    fn step(
        &mut self,
        profile: &Profile,
        text: &str,
        eoi: bool,
        session: &mut Session,
        scratch: &mut ScanScratch,
        out: &mut String,
    ) -> Result<(), Blocked> {
        let matcher = profile.matcher(self.side);
        if matcher.is_empty() {
            out.push_str(text);
            return Ok(());
        }
        let cache = profile.cache(self.side, scratch);
        if self.settled.len() != matcher.parts() {
            self.settled.resize(matcher.parts(), self.resume);
        }
        self.buf.push_str(text);
        let buf = std::mem::take(&mut self.buf);
        let mut emit = Emit {
            out,
            lazy: false,
            started: false,
        };
        let result = self.run(
            profile,
            matcher,
            cache,
            &buf,
            self.resume,
            eoi,
            session,
            &mut emit,
        );
        self.buf = buf;
        let resume = result?;
        self.resume = resume;
        self.compact();
        Ok(())
    }

    /// Drops passed-on text from `buf`, keeping the last character before `resume` as
    /// look-behind.
    fn compact(&mut self) {
        let keep_from = match self.buf[..self.resume].char_indices().next_back() {
            Some((i, _)) => i,
            None => return,
        };
        if keep_from == 0 {
            return;
        }
        self.buf.drain(..keep_from);
        self.resume -= keep_from;
        for s in &mut self.settled {
            *s = s.saturating_sub(keep_from);
        }
    }

    /// The scan proper over `hay`, from `resume`: acts on every decided match and emits text
    /// up to the first undecided position (all of it at end of input). Returns the new
    /// `resume`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        profile: &Profile,
        matcher: &SideMatcher,
        cache: &mut SideCache,
        hay: &str,
        mut resume: usize,
        eoi: bool,
        session: &mut Session,
        emit: &mut Emit<'_>,
    ) -> Result<usize, Blocked> {
        let bytes = hay.as_bytes();
        matcher.prepare(cache, bytes);
        let parts = matcher.parts();
        // Per part, the last search: (from, limit, result). Reused while still valid.
        // A side has at most MAX_PARTS parts: no allocation per scan.
        let mut found: [Option<(usize, usize, Option<Candidate>)>; MAX_PARTS] = [None; MAX_PARTS];
        let found = &mut found[..parts];
        loop {
            let limit = if eoi {
                bytes.len()
            } else {
                let mut limit = bytes.len();
                for k in 0..parts {
                    let from = self.settled[k].max(resume);
                    let p = matcher.pending(k, cache, bytes, from);
                    self.settled[k] = p;
                    limit = limit.min(p);
                }
                limit
            };
            let mut best: Option<Candidate> = None;
            for (k, slot) in found.iter_mut().enumerate() {
                let reusable = match *slot {
                    Some((_, _, Some(c))) => c.start >= resume && c.start < limit,
                    Some((from, searched, None)) => from <= resume && searched >= limit,
                    None => false,
                };
                if !reusable {
                    *slot = Some((resume, limit, matcher.find(k, cache, bytes, resume, limit)));
                }
                if let Some((_, _, Some(c))) = *slot {
                    if best.is_none_or(|b| c.better_than(&b)) {
                        best = Some(c);
                    }
                }
            }
            let Some(c) = best else {
                let stop = floor_char_boundary(hay, limit.max(resume));
                emit.text(&hay[resume..stop]);
                return Ok(stop);
            };
            // Patterns match bytes; act on whole characters so every output is valid UTF-8.
            let start = floor_char_boundary(hay, c.start);
            let end = ceil_char_boundary(hay, c.end);
            emit.text(&hay[resume..start]);
            let matched = &hay[start..end];
            match c.target {
                Target::Allow => emit.text(matched),
                Target::Placeholder => match session.original(matched) {
                    Some(original) => {
                        let original = original.to_owned();
                        emit.rewrite(&hay[..start]).push_str(&original);
                    }
                    None => emit.text(matched),
                },
                Target::Rule(rule) => {
                    session.hit(rule, self.side);
                    match profile.rules[rule].action {
                        Action::Block => {
                            return Err(Blocked {
                                rule,
                                side: self.side,
                            })
                        }
                        Action::Audit => emit.text(matched),
                        Action::Mask => {
                            let label = profile.rule_label[rule];
                            let out = emit.rewrite(&hay[..start]);
                            session.placeholder(label, &profile.labels[label], matched, out);
                        }
                    }
                }
            }
            resume = end;
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
