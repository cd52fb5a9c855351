//! Failure artifacts: a screenshot, URL and title of the page a browser
//! step failed on, the newest few kept per journey.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::CALL_TIMEOUT;
use super::actions::bounded;
use super::driver::{Browser, BrowserConfig};
use crate::outcome::Failure;
use crate::step::context::StepCtx;

/// Saves a screenshot, URL and title of a failure; keeps the newest few.
pub(super) async fn save_artifacts(
    browser: &Browser,
    ctx: &StepCtx,
    step: &str,
    c: &fantoccini::Client,
    f: &Failure,
) -> Vec<String> {
    let cfg = browser.config();
    let dir = cfg.artifacts_dir.join(&ctx.journey);
    if std::fs::create_dir_all(&dir).is_err() {
        return Vec::new();
    }
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace([':', '.'], "-");
    let base = format!("{stamp}-{step}");
    let mut saved = Vec::new();
    if let Ok(png) = bounded("screenshot", CALL_TIMEOUT, c.screenshot()).await {
        let p = dir.join(format!("{base}.png"));
        if std::fs::write(&p, png).is_ok() {
            saved.push(p.display().to_string());
        }
    }
    let url = bounded("url", CALL_TIMEOUT, c.current_url())
        .await
        .map(|u| u.to_string())
        .unwrap_or_default();
    let title = bounded("title", CALL_TIMEOUT, c.title())
        .await
        .unwrap_or_default();
    let note = format!(
        "journey: {}\nstep: {step}\nurl: {}\ntitle: {}\nreason: {}\nmessage: {}\n",
        ctx.journey,
        ctx.redactor.apply(&url),
        ctx.redactor.apply(&title),
        f.reason,
        f.message
    );
    let p = dir.join(format!("{base}.txt"));
    if std::fs::write(&p, note).is_ok() {
        saved.push(p.display().to_string());
    }
    prune(&dir, cfg.keep_artifacts);
    saved
}

/// Keeps the newest `keep` failures (each a .png + .txt pair) in `dir`.
fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    let mut stems: Vec<String> = names
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
        .collect();
    stems.dedup();
    if stems.len() <= keep {
        return;
    }
    let old: std::collections::HashSet<&String> = stems[..stems.len() - keep].iter().collect();
    for p in names {
        if p.file_stem()
            .is_some_and(|s| old.contains(&s.to_string_lossy().to_string()))
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The artifact path for a journey's file, if it is inside the artifacts dir.
pub fn artifact_path(cfg: &BrowserConfig, journey: &str, file: &str) -> Option<PathBuf> {
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (ok(journey) && ok(file)).then(|| cfg.artifacts_dir.join(journey).join(file))
}
