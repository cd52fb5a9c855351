//! `serve` safe to expose: `--web.config.file` (TLS, basic auth, client
//! certificates) scraped by a real Prometheus, the lifecycle endpoint's
//! opt-in and cross-site refusals, security headers, paging of the status
//! page and API, and half-open connections that cannot starve the probes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::serve::{Running, quick};
use crate::support::{bin, eventually, free_port, get, target::Target, tool};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wayprobe test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(vec!["prometheus".to_string()]).unwrap();
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", leaf.pem()),
        key: write("server-key.pem", key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client-key.pem", client_key.serialize_pem()),
    }
}

/// A client that trusts only the test CA (and presents the client
/// certificate when `identity`).
fn client(pki: &Pki, identity: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(crate::support::REQUEST_TIMEOUT)
        .no_proxy();
    if identity {
        let mut pem = std::fs::read(&pki.client_cert).unwrap();
        pem.extend(std::fs::read(&pki.client_key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// Starts `serve` over `journeys` with `web_config` (YAML) and lifecycle on;
/// returns it and its `https://127.0.0.1:PORT` base.
async fn serve_tls(dir: &Path, journeys: &Path, t: &Target, web_config: &str) -> (Running, String) {
    let web = dir.join("web.yml");
    std::fs::write(&web, web_config).unwrap();
    let s = Running::start_with(journeys, t, Duration::ZERO, |c| {
        c.web_config_file = Some(web.clone());
        c.server.enable_lifecycle = true;
    })
    .await;
    let https = s.base.replace("http://", "https://");
    (s, https)
}

/// The full flow of the exporter-toolkit file: a real Prometheus scrapes
/// over TLS with basic auth, and over mutual TLS with a client certificate;
/// a wrong password and a missing certificate are refused. Reload diagnostics
/// reach the authenticated caller only, and the file is re-read on reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_over_tls_with_basic_auth_and_client_certs() {
    if !tool("prometheus") {
        return;
    }
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let pki = pki(&dir);
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    std::fs::write(journeys.join("ok.yaml"), quick("ok", "/ok")).unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let (auth, auth_url) = serve_tls(
        &dir,
        &journeys,
        &t,
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  min_version: TLS12\n\
             basic_auth_users:\n  prom: '{hash}'\n\
             http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n"
        ),
    )
    .await;
    let mtls_dir = dir.join("mtls");
    std::fs::create_dir(&mtls_dir).unwrap();
    let (mtls, mtls_url) = serve_tls(
        &mtls_dir,
        &journeys,
        &t,
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            pki.cert.display(),
            pki.key.display(),
            pki.ca.display()
        ),
    )
    .await;

    let job = |name: &str, url: &str, extra: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    static_configs: [{{targets: ['{}']}}]\n{extra}",
            url.trim_start_matches("https://")
        )
    };
    let ca = pki.ca.display();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n{}{}{}{}",
        job(
            "basic",
            &auth_url,
            &format!(
                "    tls_config: {{ca_file: '{ca}'}}\n    basic_auth: {{username: prom, password: s3cret}}\n"
            )
        ),
        job(
            "wrong-password",
            &auth_url,
            &format!(
                "    tls_config: {{ca_file: '{ca}'}}\n    basic_auth: {{username: prom, password: wrong}}\n"
            )
        ),
        job(
            "mtls",
            &mtls_url,
            &format!(
                "    tls_config: {{ca_file: '{ca}', cert_file: '{}', key_file: '{}'}}\n",
                pki.client_cert.display(),
                pki.client_key.display()
            )
        ),
        job(
            "no-cert",
            &mtls_url,
            &format!("    tls_config: {{ca_file: '{ca}'}}\n")
        ),
    );
    let prom = crate::support::Prometheus::start(&dir, &config).await;
    for job in ["basic", "mtls"] {
        let v = eventually(
            60,
            &format!("Prometheus to scrape journey_runs_total ({job})"),
            || async {
                prom.query(&format!(
                    r#"journey_runs_total{{job="{job}",result="success"}}"#
                ))
                .await?
                .first()
                .cloned()
            },
        )
        .await;
        assert_eq!(v["metric"]["journey"], "ok");
    }
    for (job, want) in [
        ("basic", "1"),
        ("mtls", "1"),
        ("wrong-password", "0"),
        ("no-cert", "0"),
    ] {
        let up = eventually(30, &format!("up of {job}"), || async {
            prom.query(&format!(r#"up{{job="{job}"}}"#))
                .await?
                .first()
                .cloned()
        })
        .await;
        assert_eq!(up["value"][1], want, "up{{job={job}}}\n{}", prom.log());
    }

    // The same, by hand: 401 with a challenge, then the right password.
    let c = client(&pki, false);
    let r = c.get(format!("{auth_url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let r = c
        .get(format!("{auth_url}/metrics"))
        .basic_auth("prom", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{auth_url}/"))
        .basic_auth("prom", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    // Health checks stay open for the kubelet; nothing else does.
    assert_eq!(
        c.get(format!("{auth_url}/-/healthy"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Plain HTTP on the TLS port gets nothing served.
    assert!(
        crate::support::client()
            .get(format!("{}/metrics", auth.base))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );
    // Mutual TLS: no certificate, no connection; with it, served.
    assert!(c.get(format!("{mtls_url}/metrics")).send().await.is_err());
    let r = client(&pki, true)
        .get(format!("{mtls_url}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A refused reload explains itself to the authenticated caller only.
    let reload = |user: Option<(&'static str, &'static str)>| {
        let c = c.clone();
        let url = format!("{auth_url}/-/reload");
        async move {
            let mut r = c.post(url);
            if let Some((u, p)) = user {
                r = r.basic_auth(u, Some(p));
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    std::fs::write(
        journeys.join("bad.yaml"),
        "name: bad\nsteps:\n  - name: x\n    http: {url: \"http://x/\", methd: GET}\n",
    )
    .unwrap();
    assert_eq!(reload(None).await.0, 401);
    let (code, msg) = reload(Some(("prom", "s3cret"))).await;
    assert_eq!(code, 422);
    assert!(
        msg.contains("bad.yaml:4:30") && msg.contains("did you mean `method`?"),
        "{msg}"
    );
    std::fs::remove_file(journeys.join("bad.yaml")).unwrap();

    // The web config is re-read on reload: a new password takes over...
    let hash2 = bcrypt::hash("n3w", 4).unwrap();
    let web = dir.join("web.yml");
    let text = std::fs::read_to_string(&web)
        .unwrap()
        .replace(&hash, &hash2);
    std::fs::write(&web, &text).unwrap();
    let (code, msg) = reload(Some(("prom", "s3cret"))).await;
    assert_eq!(code, 200, "{msg}");
    assert_eq!(reload(Some(("prom", "s3cret"))).await.0, 401);
    // ...and a broken file is refused with its reason; the last good one stays.
    std::fs::write(&web, text.replace(&hash2, "n3w")).unwrap();
    let (code, msg) = reload(Some(("prom", "n3w"))).await;
    assert_eq!(code, 422);
    assert!(
        msg.contains("web.yml: basic_auth_users.prom: is not a bcrypt hash"),
        "{msg}"
    );
    let r = c
        .get(format!("{auth_url}/metrics"))
        .basic_auth("prom", Some("n3w"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = r.text().await.unwrap();
    assert!(
        m.contains("wayprobe_config_last_reload_successful 0"),
        "{m}"
    );
    drop(prom);
    auth.stop().await;
    mtls.stop().await;
}

/// A changed web config (a rotated certificate, a new password) is picked
/// up by the file watch, like a changed journey: no restart, no signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_web_config_is_picked_up_by_the_watch() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    let journeys = dir.join("journeys");
    std::fs::create_dir(&journeys).unwrap();
    std::fs::write(journeys.join("ok.yaml"), quick("ok", "/ok")).unwrap();
    let web = dir.join("web.yml");
    let users = |pw: &str| {
        format!(
            "basic_auth_users:\n  prom: '{}'\n",
            bcrypt::hash(pw, 4).unwrap()
        )
    };
    std::fs::write(&web, users("old")).unwrap();
    let s = Running::start_with(&journeys, &t, Duration::from_millis(200), |c| {
        c.web_config_file = Some(web.clone());
    })
    .await;
    let status = |pw: &'static str| {
        let url = format!("{}/metrics", s.base);
        async move {
            crate::support::client()
                .get(url)
                .basic_auth("prom", Some(pw))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("old").await, 200);
    assert_eq!(status("new").await, 401);
    std::fs::write(&web, users("new")).unwrap();
    eventually(20, "the new password to be in force", || async {
        (status("new").await == 200).then_some(())
    })
    .await;
    assert_eq!(status("old").await, 401);
    s.stop().await;
}

/// Reload is opt-in, and never through a browser on another site's behalf.
/// HTML gets the security headers; the API and the page are paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_is_opt_in_and_refuses_cross_site_requests() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    for i in 0..5 {
        std::fs::write(
            dir.join(format!("ok{i}.yaml")),
            quick(&format!("ok{i}"), "/ok"),
        )
        .unwrap();
    }
    std::fs::write(dir.join("broken.yaml"), quick("broken", "/status/503")).unwrap();

    let off = Running::start_with(&dir, &t, Duration::ZERO, |_| {}).await;
    let r = crate::support::client()
        .post(format!("{}/-/reload", off.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no --web.enable-lifecycle, no endpoint");
    off.stop().await;

    let s = Running::start(&dir, &t, Duration::ZERO).await;
    let url = format!("{}/-/reload", s.base);
    let host = s.base.trim_start_matches("http://").to_string();
    let post = |headers: &[(&str, &str)], body: Vec<u8>| {
        let mut r = crate::support::client().post(&url).body(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // What a form on evil.example makes a browser send, in each of its forms.
    for headers in [
        &[
            ("origin", "http://evil.example"),
            ("content-type", "application/x-www-form-urlencoded"),
        ][..],
        &[("origin", "null")][..],
        &[("sec-fetch-site", "cross-site")][..],
        &[("content-type", "text/plain")][..],
        &[("content-type", "multipart/form-data; boundary=x")][..],
    ] {
        let (code, msg) = post(headers, b"a=b".to_vec()).await;
        assert_eq!(code, 403, "{headers:?}: {msg}");
        assert!(msg.contains("reload refused"), "{msg}");
    }
    // The same origin (the page itself) and tools are served.
    let origin = format!("http://{host}");
    let (code, msg) = post(
        &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        Vec::new(),
    )
    .await;
    assert_eq!(code, 200, "{msg}");
    let (code, msg) = post(&[], Vec::new()).await;
    assert_eq!(code, 200, "{msg}");
    // A body past the limit is refused before anything is done with it.
    let (code, _) = post(
        &[("content-type", "application/json")],
        vec![b' '; wayprobe::server::MAX_BODY_BYTES + 1],
    )
    .await;
    assert_eq!(code, 413);
    // Declared, never sent: refused from the header, not after the request
    // timeout (which would answer 503).
    let mut c = tokio::net::TcpStream::connect(host.as_str()).await.unwrap();
    c.write_all(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), c.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Security headers: every HTML response; nosniff everywhere.
    s.wait_for_runs("ok0", 1).await;
    let r = crate::support::client()
        .get(format!("{}/", s.base))
        .send()
        .await
        .unwrap();
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let r = crate::support::client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    // Paging and filtering, for thousands of journeys.
    let api = |q: &'static str| {
        let base = s.base.clone();
        async move {
            serde_json::from_str::<serde_json::Value>(
                &get(&format!("{base}/api/v1/journeys{q}")).await.1,
            )
            .unwrap()
        }
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["journeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    let v = api("?offset=2&limit=2").await;
    assert_eq!(names(&v), ["ok1", "ok2"]);
    assert_eq!(
        (v["total"].as_u64(), v["next_offset"].as_u64()),
        (Some(6), Some(4))
    );
    assert_eq!(names(&api("?q=ok4").await), ["ok4"]);
    let failing = eventually(20, "broken to fail", || async {
        let v = api("?state=failing").await;
        (v["total"] == 1).then_some(v)
    })
    .await;
    assert_eq!(names(&failing), ["broken"]);
    let page = get(&format!("{}/?limit=2&offset=2", s.base)).await.1;
    assert!(page.contains("Showing 3–4 of 6"), "{page}");
    assert!(page.contains("data-journey=\"ok1\"") && !page.contains("data-journey=\"ok0\""));
    assert!(
        page.contains("rel=next href=\"/?offset=4&amp;limit=2\""),
        "{page}"
    );
    let page = get(&format!("{}/?state=failing", s.base)).await.1;
    assert!(page.contains("data-journey=\"broken\"") && !page.contains("data-journey=\"ok1\""));
    // A query that means nothing is a 400 saying what to write (JSON from
    // the API), never an empty list that looks like "nothing failing".
    for (q, says) in [
        (
            "?state=bogus",
            "unknown state `bogus`: write one of failing, passing, slow, waiting",
        ),
        (
            "?limit=-1",
            "`limit` must be a whole number from 1 to 10000, e.g. `?offset=0&limit=100`, not `-1`",
        ),
        (
            "?offset=abc",
            "`offset` must be a whole number ≥ 0, e.g. `?offset=0&limit=100`, not `abc`",
        ),
        (
            "?limit=0",
            "`limit` must be from 1 to 10000, e.g. `?limit=100`, not `0`",
        ),
        // Every problem at once, each named for what it is.
        (
            "?state=failing&state=passing&offset=-3",
            "`state` is given more than once: give it once; \
             `offset` must be a whole number ≥ 0, e.g. `?offset=0&limit=100`, not `-3`",
        ),
        (
            "?state=bogus&limit=-1",
            "unknown state `bogus`: write one of failing, passing, slow, waiting; \
             `limit` must be a whole number from 1 to 10000, e.g. `?offset=0&limit=100`, not `-1`",
        ),
    ] {
        let (code, body) = get(&format!("{}/api/v1/journeys{q}", s.base)).await;
        assert_eq!(code, 400, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], says, "{q}");
        let (code, body) = get(&format!("{}/{q}", s.base)).await;
        assert_eq!((code, body.trim_end()), (400, says), "{q}");
    }
    s.stop().await;
}

/// Each kind of bad web config: exit 2 before anything is served, and one
/// line saying which file and key, and what to write instead (golden).
#[test]
fn an_invalid_web_config_exits_2_with_the_reason() {
    let dir = crate::http::tempdir();
    let web = dir.join("web.yml");
    let cases = [
        "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
        "tls_server_config:\n  cert_file: web.yml\n  key_file: web.yml\n",
        "tls_server_config:\n  cert_fil: a.pem\n",
        "tls_server_config:\n  key_file: k.pem\n",
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
        "basic_auth_users:\n  prom: s3cret\n",
        "http_server_config:\n  headers:\n    Server: wayprobe\n",
        "http_server_config:\n  http2: true\n",
    ];
    let mut report = String::new();
    for yaml in cases {
        std::fs::write(&web, yaml).unwrap();
        let out = bin()
            .current_dir(crate::support::root())
            .args(["serve", "--listen", "127.0.0.1:0", "--journeys", "journeys"])
            .arg("--web.config.file")
            .arg(&web)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).replace(&dir.display().to_string(), "DIR");
        assert_eq!(out.status.code(), Some(2), "{yaml}\n{err}");
        report.push_str(&format!("--- {yaml}{err}"));
    }
    crate::support::golden::assert_golden("web/invalid-config.txt", &report);
}

/// A child process killed when the test ends, even by a failed assert.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Value of the first exposition line starting with `prefix`.
fn value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// The attack from the field: 1,100 requests that never finish their headers,
/// against a prober limited to 1,024 open files. The connection cap (a
/// quarter of the file limit) and the header timeout keep the probe's own
/// sockets free: the healthy journey keeps passing on time, `/metrics`
/// answers, and every half-open connection is closed by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_connections_cannot_starve_the_probes() {
    // This test's own 1,100 sockets need more than a default 1,024.
    let (soft, _) = wayprobe::server::raise_nofile_limit().unwrap();
    assert!(
        soft >= 2048,
        "the test needs 2,048 open files; the hard limit is {soft}"
    );
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::write(dir.join("ok.yaml"), quick("ok", "/ok")).unwrap();
    let port = free_port();
    let log = dir.join("serve.log");
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 1024 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_wayprobe"))
        .args([
            "serve",
            "--watch-interval",
            "0s",
            "--web.read-header-timeout",
            "2s",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--journeys")
        .arg(&dir)
        .args(["--var", &format!("base_url={}", t.base)])
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let metrics = || async {
        crate::support::client()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let ok = r#"journey_runs_total{journey="ok",location="local",result="success"} "#;
    let failed = r#"journey_runs_total{journey="ok",location="local",result="failure"} "#;
    let before = eventually(30, "two runs of ok", || async {
        let m = metrics().await?;
        (value(&m, ok)? >= 2.0).then_some(m)
    })
    .await;
    let serve_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        serve_log.contains("open-file limit") && serve_log.contains("connection cap lowered"),
        "{serve_log}"
    );

    // Each attacker sends half a request and waits (at most 30 s) for the
    // server to give up on it.
    let attackers: Vec<_> = (0..1100)
        .map(|_| {
            tokio::spawn(async move {
                let Ok(Ok(mut s)) = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio::net::TcpStream::connect(("127.0.0.1", port)),
                )
                .await
                else {
                    return None;
                };
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
                let mut buf = [0u8; 256];
                let closed = tokio::time::timeout(Duration::from_secs(30), async {
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await
                .is_ok();
                Some(closed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // /metrics answers while they are held (a slot frees within one header timeout).
    let during = eventually(25, "/metrics during the attack", || async {
        metrics().await
    })
    .await;
    assert!(value(&during, ok).is_some());
    let mut connected = 0;
    let mut closed_by_server = 0;
    for a in attackers {
        if let Some(closed) = a.await.unwrap() {
            connected += 1;
            closed_by_server += closed as u32;
        }
    }
    assert!(
        connected >= 1000,
        "only {connected} of 1,100 attackers connected"
    );
    assert_eq!(
        closed_by_server, connected,
        "every half-open connection is closed by the server"
    );

    let after = metrics().await.expect("/metrics after the attack");
    drop(child);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("Too many open files"), "{log}");
    // The journey kept passing, every time, on schedule.
    assert_eq!(value(&after, failed), value(&before, failed), "{after}");
    assert!(
        value(&after, ok).unwrap() >= value(&before, ok).unwrap() + 5.0,
        "{after}"
    );
    let lag = |m: &str, le: &str| {
        value(
            m,
            &format!("wayprobe_schedule_lag_seconds_bucket{{le=\"{le}\"}} "),
        )
    };
    let count = value(&after, "wayprobe_schedule_lag_seconds_count ").unwrap();
    assert_eq!(
        lag(&after, "1.0"),
        Some(count),
        "no run started a second late:\n{after}"
    );
}

/// Answers to `paths` in turn over one HTTP/1.1 connection to `addr`: each
/// status and its `Connection` header, then whether the connection would
/// take another request.
async fn over_one_connection(addr: &str, paths: &[&str]) -> (Vec<(u16, Option<String>)>, bool) {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(tcp))
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut answers = Vec::new();
    for p in paths {
        send.ready().await.unwrap();
        let req = hyper::Request::get(*p)
            .header(hyper::header::HOST, "127.0.0.1")
            .body(http_body_util::Empty::new())
            .unwrap();
        let r = send.send_request(req).await.unwrap();
        let status = r.status().as_u16();
        let connection = r
            .headers()
            .get(hyper::header::CONNECTION)
            .map(|v| v.to_str().unwrap().to_string());
        r.into_body().collect().await.unwrap();
        answers.push((status, connection));
    }
    // Ready for more on a kept-alive connection; an error once it is closed.
    let open = tokio::time::timeout(Duration::from_secs(10), send.ready())
        .await
        .expect("the connection is either ready or closed")
        .is_ok();
    (answers, open)
}

/// The scheduling policy (`/proc/self/task/TID/stat`, field 41: 0 normal,
/// 5 `SCHED_IDLE`) of each of this process's threads named `name`.
fn policies_of_threads(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the name (which may hold spaces) start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        out.push(
            rest.split_whitespace()
                .nth(41 - 3)
                .unwrap()
                .parse()
                .unwrap(),
        );
    }
    out
}

/// Readers of the status page and API are served by threads at
/// `SCHED_IDLE`, so the kernel runs them only on CPU time the probes leave;
/// `/metrics` and health by the HTTP runtime at normal priority. A
/// connection keeps the lane of its first request; one that started with
/// `/metrics` and asks for a page gets it, with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_served_at_idle_priority_and_scrapes_are_not() {
    let t = Target::start().await;
    let dir = crate::http::tempdir();
    std::fs::write(dir.join("ok.yaml"), quick("ok", "/ok")).unwrap();
    let s = Running::start_with(&dir, &t, Duration::ZERO, |_| {}).await;
    s.wait_for_runs("ok", 1).await;
    let addr = s.base.trim_start_matches("http://").to_string();

    // A reader: page, API, page again, and a scrape, all on one connection.
    let (answers, open) = over_one_connection(
        &addr,
        &["/", "/api/v1/journeys", "/?state=passing", "/metrics"],
    )
    .await;
    assert_eq!(answers, vec![(200, None); 4]);
    assert!(open, "a reader's connection stays open");
    // A scraper: scrapes and health stay on the connection; a page closes it.
    let (answers, open) =
        over_one_connection(&addr, &["/metrics", "/-/healthy", "/metrics", "/"]).await;
    assert_eq!(
        answers,
        vec![
            (200, None),
            (200, None),
            (200, None),
            (200, Some("close".into()))
        ]
    );
    assert!(!open, "the connection ends after the page");

    // Every page-lane thread (of every serve in this process; one just
    // starting may not have lowered itself yet) runs at SCHED_IDLE, every
    // HTTP runtime thread at the normal policy.
    let (idle, normal) = eventually(10, "page-lane threads at SCHED_IDLE", || async {
        let idle = policies_of_threads(wayprobe::server::PAGE_LANE_THREAD);
        let normal = policies_of_threads("wayprobe-http");
        (!idle.is_empty() && idle.iter().all(|&p| p == 5)).then_some((idle, normal))
    })
    .await;
    assert!(idle.len() >= 2, "the worker and a render thread: {idle:?}");
    assert!(
        !normal.is_empty() && normal.iter().all(|&p| p == 0),
        "{normal:?}"
    );
    s.stop().await;
}
