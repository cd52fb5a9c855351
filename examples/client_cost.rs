//! Measures the per-run cost of a new visitor's HTTP client (built and
//! dropped): reqwest with its default TLS, reqwest over the shared TLS
//! configuration (what a run built before issue 13), and the run's own
//! hyper client over the shared configuration (what a run builds now).
fn main() {
    const N: u32 = 2000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let jar = || {
            std::sync::Arc::new(reqwest_cookie_store::CookieStoreMutex::new(
                Default::default(),
            ))
        };
        let t = std::time::Instant::now();
        for _ in 0..N / 20 {
            let _c = reqwest::Client::builder()
                .cookie_provider(jar())
                .build()
                .unwrap();
        }
        println!(
            "reqwest, default TLS: {:?} per client",
            t.elapsed() / (N / 20)
        );
        let cache = wayprobe::tls::TlsCache::default();
        let t = std::time::Instant::now();
        for _ in 0..N {
            let cfg = cache.config(&Default::default()).unwrap();
            let _c = reqwest::Client::builder()
                .cookie_provider(jar())
                .redirect(reqwest::redirect::Policy::none())
                .tls_backend_preconfigured((*cfg).clone())
                .build()
                .unwrap();
        }
        println!("reqwest, shared TLS: {:?} per client", t.elapsed() / N);
        let t = std::time::Instant::now();
        for _ in 0..N {
            let cfg = cache.config(&Default::default()).unwrap();
            let _j = jar();
            let _c = wayprobe::step::timing::client(cfg, Default::default());
        }
        println!(
            "a run's own hyper client, shared TLS: {:?} per client",
            t.elapsed() / N
        );
    });
}
