//! Rendered status pages and API answers, shared by every reader of the same
//! page: one render per status snapshot and query, whatever the number of
//! readers, and bodies held in 64 KiB pieces rather than one allocation.
//!
//! Without it, each of 200 concurrent readers rendered its own copy of the
//! page (1,000 journeys of JSON for the API), and up to 200 bodies were in
//! memory at once (bench/README.md, "Readers beside the probes").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::status::Generation;

/// How long rendered pages are shared, and how many are kept.
#[derive(Debug, Clone, Copy)]
pub struct PageCacheOptions {
    /// A rendered page is served to every reader for this long after its
    /// render began, even if runs finished since (not after a reload): at
    /// most one render per page and query in this time, however busy the
    /// prober.
    pub share_for: Duration,
    /// A page whose status snapshot has not changed is served for up to
    /// this long (its "12s ago" and SLO windows age, so not for ever).
    pub max_age: Duration,
    /// Distinct pages (query strings) kept at once.
    pub max_entries: usize,
    /// Bytes of rendered pages kept at once (a larger page is still shared
    /// by the readers waiting for it, then dropped).
    pub max_bytes: usize,
}

impl Default for PageCacheOptions {
    fn default() -> Self {
        Self {
            share_for: Duration::from_secs(1),
            max_age: Duration::from_secs(5),
            max_entries: 64,
            max_bytes: 32 << 20,
        }
    }
}

/// Which endpoint a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// `/`, the status page (HTML).
    Status,
    /// `/api/v1/journeys` (JSON).
    Api,
}

/// A page and its query, normalised (defaults applied, unknown parameters
/// dropped): two requests with the same key get the same body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The endpoint.
    pub kind: PageKind,
    /// `?state=`.
    pub state: Option<String>,
    /// `?q=`.
    pub q: Option<String>,
    /// `?offset=` (0 when absent).
    pub offset: usize,
    /// `?limit=`, the endpoint's default applied and clamped.
    pub limit: usize,
}

impl PageKey {
    /// Bytes the key itself holds, counted against the cache's budget.
    fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.state.as_ref().map_or(0, String::len)
            + self.q.as_ref().map_or(0, String::len)
    }
}

/// The size of each piece of a rendered body.
pub const PIECE: usize = 64 * 1024;

/// A rendered body: pieces of at most [`PIECE`] bytes, shared (cloning it
/// copies no text).
#[derive(Debug, Clone)]
pub struct Page {
    pieces: Arc<[Bytes]>,
    len: usize,
}

impl Page {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The whole body in one buffer (tests; the server streams the pieces).
    pub fn to_vec(&self) -> Vec<u8> {
        self.pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }
}

/// Writes a body in [`PIECE`]-byte pieces: a large page is never one large
/// allocation grown by doubling (and copied at each step).
#[derive(Debug, Default)]
pub struct PageWriter {
    done: Vec<Bytes>,
    cur: BytesMut,
    len: usize,
}

impl PageWriter {
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `s`.
    pub fn push_str(&mut self, s: &str) {
        self.push(s.as_bytes());
    }

    /// Appends `b`.
    pub fn push(&mut self, mut b: &[u8]) {
        self.len += b.len();
        while !b.is_empty() {
            if self.cur.capacity() == 0 {
                self.cur = BytesMut::with_capacity(PIECE);
            }
            let n = (PIECE - self.cur.len()).min(b.len());
            self.cur.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.cur.len() == PIECE {
                self.done.push(std::mem::take(&mut self.cur).freeze());
            }
        }
    }

    /// The body written.
    pub fn finish(mut self) -> Page {
        if !self.cur.is_empty() {
            self.done.push(self.cur.freeze());
        }
        Page {
            pieces: self.done.into(),
            len: self.len,
        }
    }
}

impl std::fmt::Write for PageWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

impl std::io::Write for PageWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One render of one page: the readers that arrive while it runs wait for
/// it instead of rendering again.
#[derive(Debug)]
struct Flight {
    /// The status store's generation the render started from (or a newer one).
    generation: Generation,
    started: Instant,
    body: tokio::sync::OnceCell<Page>,
}

impl Flight {
    fn bytes(&self, key: &PageKey) -> usize {
        key.weight() + self.body.get().map_or(0, Page::len)
    }
}

/// Rendered pages by [`PageKey`], each for one status generation (see
/// [`PageCacheOptions`] for how long one is shared). Bounded in entries and
/// bytes; the oldest go first.
#[derive(Debug, Default)]
pub struct PageCache {
    opts: PageCacheOptions,
    flights: Mutex<HashMap<PageKey, Arc<Flight>>>,
    renders: AtomicU64,
}

impl PageCache {
    /// An empty cache.
    pub fn new(opts: PageCacheOptions) -> Self {
        Self {
            opts,
            ..Self::default()
        }
    }

    /// Renders done since start (each shared by every reader of its page).
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// Pages held now and their bytes (keys included).
    pub fn held(&self) -> (usize, usize) {
        let flights = self.lock();
        (flights.len(), flights.iter().map(|(k, f)| f.bytes(k)).sum())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PageKey, Arc<Flight>>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `f` may answer a reader who sees status `generation` at `now`.
    fn serves(&self, f: &Flight, generation: Generation, now: Instant) -> bool {
        let age = now.saturating_duration_since(f.started);
        f.generation.config == generation.config
            && (age < self.opts.share_for
                || (f.generation.any == generation.any && age < self.opts.max_age))
    }

    /// The page for `key` at status `generation` (read before the snapshot
    /// the render takes): the shared one if it still serves, else the one
    /// being rendered for it, else `render`'s. `None` when the render gave
    /// nothing (shutting down).
    pub async fn get_or_render<F, Fut>(
        &self,
        key: PageKey,
        generation: Generation,
        now: Instant,
        render: F,
    ) -> Option<Page>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<Page>>,
    {
        let flight = {
            let mut flights = self.lock();
            match flights.get(&key) {
                Some(f) if self.serves(f, generation, now) => f.clone(),
                _ => {
                    let f = Arc::new(Flight {
                        generation,
                        started: now,
                        body: tokio::sync::OnceCell::new(),
                    });
                    flights.insert(key, f.clone());
                    self.evict(&mut flights, now);
                    f
                }
            }
        };
        // A reader that goes away mid-render leaves the cell empty; the next
        // waiter renders instead.
        let page = flight
            .body
            .get_or_try_init(|| async {
                self.renders.fetch_add(1, Ordering::Relaxed);
                render().await.ok_or(())
            })
            .await
            .ok()
            .cloned();
        // Its size is known now: keep within the byte budget.
        self.evict(&mut self.lock(), now);
        page
    }

    /// Drops pages too old to serve anyone, then the oldest until the
    /// entries and bytes are within bounds.
    fn evict(&self, flights: &mut HashMap<PageKey, Arc<Flight>>, now: Instant) {
        let keep = self.opts.share_for.max(self.opts.max_age);
        flights.retain(|_, f| now.saturating_duration_since(f.started) < keep);
        let mut bytes: usize = flights.iter().map(|(k, f)| f.bytes(k)).sum();
        while flights.len() > self.opts.max_entries || bytes > self.opts.max_bytes {
            let Some(oldest) = flights
                .iter()
                .min_by_key(|(_, f)| f.started)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(f) = flights.remove(&oldest) {
                bytes -= f.bytes(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: PageKind, offset: usize) -> PageKey {
        PageKey {
            kind,
            state: None,
            q: None,
            offset,
            limit: 100,
        }
    }

    fn body(text: &str) -> Page {
        let mut w = PageWriter::new();
        w.push_str(text);
        w.finish()
    }

    fn runs(any: u64) -> Generation {
        Generation { config: 0, any }
    }

    fn text(p: &Page) -> String {
        String::from_utf8(p.to_vec()).unwrap()
    }

    /// Concurrent readers of one page wait for one render and share its
    /// bytes; another query is never answered with that body.
    #[tokio::test]
    async fn concurrent_misses_share_one_render() {
        let cache = Arc::new(PageCache::new(PageCacheOptions::default()));
        let now = Instant::now();
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut readers = Vec::new();
        for _ in 0..20 {
            let (cache, gate) = (cache.clone(), gate.clone());
            readers.push(tokio::spawn(async move {
                cache
                    .get_or_render(key(PageKind::Api, 0), runs(7), now, || async move {
                        gate.notified().await;
                        Some(body("one render"))
                    })
                    .await
                    .unwrap()
            }));
        }
        tokio::task::yield_now().await;
        gate.notify_one();
        let pages: Vec<Page> = futures_util::future::join_all(readers)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(cache.renders(), 1);
        for p in &pages {
            assert!(Arc::ptr_eq(&p.pieces, &pages[0].pieces), "the same bytes");
        }
        let other = cache
            .get_or_render(key(PageKind::Api, 100), runs(7), now, || async {
                Some(body("page two"))
            })
            .await
            .unwrap();
        assert_eq!(text(&other), "page two");
        let status = cache
            .get_or_render(key(PageKind::Status, 0), runs(7), now, || async {
                Some(body("html"))
            })
            .await
            .unwrap();
        assert_eq!(text(&status), "html");
        assert_eq!(cache.renders(), 3);
    }

    /// A new status generation (a run finished) renders again once the page
    /// is older than `share_for`, a reload at once; an unchanged one is
    /// served up to `max_age`, never past it.
    #[tokio::test]
    async fn a_new_generation_renders_again_after_share_for() {
        let cache = PageCache::new(PageCacheOptions {
            share_for: Duration::from_secs(1),
            max_age: Duration::from_secs(5),
            ..Default::default()
        });
        let t0 = Instant::now();
        let get = |generation: Generation, at: u64, text: &'static str| {
            cache.get_or_render(
                key(PageKind::Status, 0),
                generation,
                t0 + Duration::from_millis(at),
                move || async move { Some(body(text)) },
            )
        };
        assert_eq!(text(&get(runs(1), 0, "g1").await.unwrap()), "g1");
        // Runs finished (generation 2), but within share_for: shared.
        assert_eq!(text(&get(runs(2), 900, "g2").await.unwrap()), "g1");
        // Past share_for, the new generation is rendered.
        assert_eq!(text(&get(runs(2), 1000, "g2").await.unwrap()), "g2");
        // Unchanged: served until max_age.
        assert_eq!(text(&get(runs(2), 5900, "late").await.unwrap()), "g2");
        assert_eq!(text(&get(runs(2), 6000, "aged").await.unwrap()), "aged");
        // A reload shows at once, within share_for too.
        let reloaded = Generation { config: 1, any: 3 };
        assert_eq!(
            text(&get(reloaded, 6001, "reloaded").await.unwrap()),
            "reloaded"
        );
        assert_eq!(cache.renders(), 4);
    }

    /// A render that gives nothing is not kept: the next reader renders.
    #[tokio::test]
    async fn a_failed_render_is_not_kept() {
        let cache = PageCache::new(PageCacheOptions::default());
        let now = Instant::now();
        let k = || key(PageKind::Api, 0);
        assert!(
            cache
                .get_or_render(k(), runs(1), now, || async { None })
                .await
                .is_none()
        );
        let p = cache
            .get_or_render(k(), runs(1), now, || async { Some(body("ok")) })
            .await;
        assert_eq!(text(&p.unwrap()), "ok");
    }

    /// Entries and bytes stay within their bounds, the oldest going first;
    /// a page over the byte budget is handed out but not kept.
    #[tokio::test]
    async fn the_cache_is_bounded() {
        let cache = PageCache::new(PageCacheOptions {
            max_entries: 3,
            max_bytes: 3 * PIECE,
            ..Default::default()
        });
        let t0 = Instant::now();
        for i in 0..10u64 {
            let at = t0 + Duration::from_millis(i);
            cache
                .get_or_render(key(PageKind::Api, i as usize), runs(1), at, || async {
                    Some(body("x"))
                })
                .await;
            assert!(cache.held().0 <= 3);
        }
        // The newest three are kept.
        let again = cache
            .get_or_render(key(PageKind::Api, 9), runs(1), t0, || async {
                Some(body("re-rendered"))
            })
            .await;
        assert_eq!(text(&again.unwrap()), "x");
        let big = "y".repeat(4 * PIECE);
        let p = cache
            .get_or_render(key(PageKind::Status, 0), runs(1), t0, || async {
                Some(body(&big))
            })
            .await
            .unwrap();
        assert_eq!(p.len(), 4 * PIECE);
        assert!(p.pieces().iter().all(|x| x.len() == PIECE), "64 KiB pieces");
        let (entries, bytes) = cache.held();
        assert!(entries <= 3 && bytes <= 3 * PIECE, "{entries} {bytes}");
    }

    /// Text written in any sizes comes out whole, in pieces of PIECE bytes.
    #[test]
    fn the_writer_cuts_whole_pieces() {
        use std::fmt::Write as _;
        let mut w = PageWriter::new();
        let mut want = String::new();
        for i in 0..20_000 {
            let _ = writeln!(w, "line {i}");
            want.push_str(&format!("line {i}\n"));
        }
        let p = w.finish();
        assert_eq!(p.len(), want.len());
        assert_eq!(text(&p), want);
        let (last, whole) = p.pieces().split_last().unwrap();
        assert!(whole.iter().all(|x| x.len() == PIECE));
        assert!(!last.is_empty() && last.len() <= PIECE);
    }
}
