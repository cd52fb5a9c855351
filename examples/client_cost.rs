//! Measures the per-run cost of building an HTTP client, default TLS vs shared.
fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let t = std::time::Instant::now();
        for _ in 0..50 {
            let jar = std::sync::Arc::new(reqwest_cookie_store::CookieStoreMutex::new(
                Default::default(),
            ));
            let _c = reqwest::Client::builder()
                .cookie_provider(jar)
                .build()
                .unwrap();
        }
        println!("default TLS: {:?} per client", t.elapsed() / 50);
        let cache = wayprobe::tls::TlsCache::default();
        let phases = wayprobe::step::timing::Phases::default();
        let t = std::time::Instant::now();
        for _ in 0..50 {
            let jar = std::sync::Arc::new(reqwest_cookie_store::CookieStoreMutex::new(
                Default::default(),
            ));
            let cfg = cache.config(&Default::default()).unwrap();
            let _c = reqwest::Client::builder()
                .cookie_provider(jar)
                .tls_backend_preconfigured(cfg)
                .dns_resolver(phases.resolver())
                .connector_layer(phases.layer())
                .build()
                .unwrap();
        }
        println!(
            "shared TLS, as a run builds it: {:?} per client",
            t.elapsed() / 50
        );
    });
}
