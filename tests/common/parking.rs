//! A pass-through store that, when armed, parks before and after each call to the
//! real backend until the test releases that point: so a test can drop the
//! caller's future at every await a store call puts in its way.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use scopegate::store::{Intercepted, Interceptor, InvalidationFeed, StoreCall, StoreError};
use tokio::sync::watch;

/// The test's handle on the park points.
#[derive(Clone)]
pub struct Parks {
    armed: Arc<AtomicBool>,
    /// Park points reached since arming.
    reached: Arc<AtomicUsize>,
    /// Calls to the real backend under way (armed or not).
    in_call: Arc<AtomicUsize>,
    /// Calls to the real backend so far.
    calls: Arc<AtomicUsize>,
    /// Points with an index below this pass.
    released: watch::Sender<usize>,
}

impl Default for Parks {
    fn default() -> Self {
        Self {
            armed: Arc::default(),
            reached: Arc::default(),
            in_call: Arc::default(),
            calls: Arc::default(),
            released: watch::Sender::new(usize::MAX),
        }
    }
}

/// How a run of an operation under [`Parks::drop_at`] ended.
pub enum Run<T> {
    /// It finished before reaching the point.
    Finished(T),
    /// It was dropped while parked at the point.
    Dropped,
}

impl Parks {
    /// Runs `op`, letting its first `point` park points pass. Once it is parked
    /// at the next, runs `while_parked` (calls no longer park meanwhile), drops
    /// `op`, releases everything and waits until no call is under way in the
    /// real backend.
    pub async fn drop_at<T, C: Future<Output = ()>>(
        &self,
        point: usize,
        op: impl Future<Output = T>,
        while_parked: impl FnOnce() -> C,
    ) -> Run<T> {
        self.reached.store(0, Ordering::SeqCst);
        self.released.send_replace(point);
        self.armed.store(true, Ordering::SeqCst);
        let run = {
            let mut op = std::pin::pin!(op);
            let run = tokio::select! {
                biased;
                out = &mut op => Run::Finished(out),
                () = self.reached_beyond(point) => Run::Dropped,
            };
            self.armed.store(false, Ordering::SeqCst);
            if let Run::Dropped = run {
                while_parked().await;
            }
            run
        };
        self.released.send_replace(usize::MAX);
        self.wait_idle().await;
        run
    }

    /// Runs `op`, letting its first `point` park points pass; once it is parked
    /// at the next, runs `meanwhile` (calls no longer park), then lets `op` go on
    /// to its end: forces `meanwhile` between two steps of `op`.
    pub async fn pause_at<T, C: Future<Output = ()>>(
        &self,
        point: usize,
        op: impl Future<Output = T>,
        meanwhile: impl FnOnce() -> C,
    ) -> T {
        self.reached.store(0, Ordering::SeqCst);
        self.released.send_replace(point);
        self.armed.store(true, Ordering::SeqCst);
        let mut op = std::pin::pin!(op);
        tokio::select! {
            biased;
            _ = &mut op => panic!("the operation finished before park point {point}"),
            () = self.reached_beyond(point) => {}
        }
        self.armed.store(false, Ordering::SeqCst);
        meanwhile().await;
        self.released.send_replace(usize::MAX);
        op.await
    }

    async fn reached_beyond(&self, point: usize) {
        for _ in 0..10_000 {
            if self.reached.load(Ordering::SeqCst) > point {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("park point {point} was never reached, nor did the operation finish");
    }

    /// Calls to the real backend so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until no call is under way in the real backend.
    pub async fn wait_idle(&self) {
        for _ in 0..5_000 {
            if self.in_call.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("a store call stayed under way for 5 s after its release");
    }

    async fn park(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        let index = self.reached.fetch_add(1, Ordering::SeqCst);
        let mut released = self.released.subscribe();
        // The sender lives as long as `self`.
        let _ = released.wait_for(|below| index < *below).await;
    }

    /// Parks, calls the backend, parks again; counted as under way throughout.
    async fn around<T>(&self, call: impl Future<Output = T>) -> T {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.in_call.fetch_add(1, Ordering::SeqCst);
        let _done = Decrement(&self.in_call);
        self.park().await;
        let out = call.await;
        self.park().await;
        out
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The invalidation feed a parked store offers.
pub enum Feed {
    /// The backend's own.
    Inner,
    /// None, as a store without one would have: a cache in front then settles
    /// its own writes alone.
    Hidden,
    /// One the test drives, handed out afresh to each cache.
    Given(Box<dyn Fn() -> Box<dyn InvalidationFeed> + Send + Sync>),
}

impl Feed {
    /// `feed` in place of the backend's: the test says when it is up.
    pub fn given(feed: impl InvalidationFeed + Clone + Sync) -> Self {
        Self::Given(Box::new(move || Box::new(feed.clone())))
    }
}

/// Parks every call to the real backend ([`Parks`]).
pub struct Parker {
    parks: Parks,
    feed: Feed,
}

impl Interceptor for Parker {
    async fn around<T: Send + 'static>(
        &self,
        _: StoreCall,
        inner: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        self.parks.around(inner).await
    }

    fn invalidation_feed(
        &self,
        inner: Option<Box<dyn InvalidationFeed>>,
    ) -> Option<Box<dyn InvalidationFeed>> {
        match &self.feed {
            Feed::Inner => inner,
            Feed::Hidden => None,
            Feed::Given(feed) => Some(feed()),
        }
    }
}

/// A real backend whose every call can be parked.
pub type Parking<S> = Intercepted<S, Parker>;

/// `inner` with every call parkable, offering its own feed.
pub fn parking<S>(inner: S) -> (Parking<S>, Parks) {
    parking_with(inner, Feed::Inner)
}

/// `inner` with every call parkable, offering `feed`.
pub fn parking_with<S>(inner: S, feed: Feed) -> (Parking<S>, Parks) {
    let parks = Parks::default();
    let parker = Parker {
        parks: parks.clone(),
        feed,
    };
    (Intercepted::new(inner, parker), parks)
}
