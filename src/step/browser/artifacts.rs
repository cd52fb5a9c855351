//! Failure artifacts: a screenshot, URL and title of the page a browser
//! step failed on, the newest few kept per journey, in a private directory;
//! secrets shown in the page are masked while a screenshot is taken.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::call::{CALL_TIMEOUT, bounded};
use super::driver::{Browser, BrowserConfig};
use crate::outcome::Failure;
use crate::redact::Redactor;
use crate::step::context::StepCtx;

/// JavaScript that replaces every secret shown in the page (text nodes and
/// form field values, whitespace-tolerant) by `***`, remembering the
/// originals; returns how many places it masked.
const MASK_JS: &str = r#"
const res = arguments[0].filter(s => s.trim()).map(s => new RegExp(
  s.trim().split(/\s+/).map(w => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('\\s+'), 'g'));
const mask = v => res.reduce((acc, re) => acc.replace(re, '***'), v);
const saved = [];
const root = document.documentElement;
if (root) {
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const v = mask(n.nodeValue);
    if (v !== n.nodeValue) { saved.push([n, 'text', n.nodeValue]); n.nodeValue = v; }
  }
  for (const el of document.querySelectorAll('input, textarea')) {
    const v = mask(el.value);
    if (v !== el.value) { saved.push([el, 'value', el.value]); el.value = v; }
  }
}
window.__wayprobeMasked = saved;
return saved.length;
"#;

/// JavaScript that puts back what [`MASK_JS`] masked, so the journey goes on
/// with the page as it was.
const UNMASK_JS: &str = r#"
for (const [n, kind, v] of (window.__wayprobeMasked || [])) {
  if (kind === 'text') { n.nodeValue = v; } else { n.value = v; }
}
delete window.__wayprobeMasked;
return null;
"#;

/// A screenshot with the run's secrets masked in the page while it is
/// taken. If the page cannot be masked, no screenshot is taken: a secret
/// must not reach an image nobody redacts.
pub(super) async fn screenshot(
    c: &fantoccini::Client,
    redactor: &Redactor,
    limit: Duration,
) -> Result<Vec<u8>, Failure> {
    let secrets = redactor.secrets();
    if secrets.is_empty() {
        return bounded("screenshot", limit, c.screenshot()).await;
    }
    let args = vec![serde_json::json!(secrets)];
    bounded(
        "masking secrets before a screenshot",
        limit,
        c.execute(MASK_JS, args),
    )
    .await
    .map_err(|mut f| {
        f.message = format!(
            "no screenshot taken, the page could not be masked: {}",
            f.message
        );
        f
    })?;
    let png = bounded("screenshot", limit, c.screenshot()).await;
    let _ = bounded("unmasking", CALL_TIMEOUT, c.execute(UNMASK_JS, vec![])).await;
    png
}

/// The directory a journey's artifacts go to, created private (0700) with
/// its parent; refused if either is a symbolic link or not a directory, so
/// nothing is written (or pruned) through a link someone placed there.
pub(super) fn journey_dir(base: &Path, journey: &str) -> std::io::Result<PathBuf> {
    let dir = base.join(journey);
    for d in [base, dir.as_path()] {
        match std::fs::symlink_metadata(d) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is not a directory (a symbolic link?); not writing artifacts there",
                    d.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// Writes a new file (0600) in `dir`, replacing a previous one of that name;
/// never follows a symbolic link at that name.
pub(super) fn write_new(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    let p = dir.join(name);
    if std::fs::symlink_metadata(&p).is_ok() {
        // Removes a file or a link itself, never what a link points to.
        std::fs::remove_file(&p)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)?;
    f.write_all(data)?;
    Ok(p)
}

/// Saves a screenshot, URL and title of a failure; keeps the newest few.
pub(super) async fn save_artifacts(
    browser: &Browser,
    ctx: &StepCtx,
    step: &str,
    c: &fantoccini::Client,
    f: &Failure,
) -> Vec<String> {
    let cfg = browser.config();
    let dir = match journey_dir(&cfg.artifacts_dir, &ctx.journey) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(journey = %ctx.journey, error = %e, "cannot save failure artifacts");
            return Vec::new();
        }
    };
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace([':', '.'], "-");
    let base = format!("{stamp}-{step}");
    let mut saved = Vec::new();
    if let Ok(png) = screenshot(c, &ctx.redactor, CALL_TIMEOUT).await
        && let Ok(p) = write_new(&dir, &format!("{base}.png"), &png)
    {
        saved.push(p.display().to_string());
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
    if let Ok(p) = write_new(&dir, &format!("{base}.txt"), note.as_bytes()) {
        saved.push(p.display().to_string());
    }
    prune(&dir, cfg.keep_artifacts);
    saved
}

/// Whether `name` is a failure artifact wayprobe writes:
/// `YYYY-MM-DDTHH-MM-SS-mmmZ-<step>.png|txt`.
fn is_failure_artifact(name: &str) -> bool {
    let Some(stem) = name
        .strip_suffix(".png")
        .or_else(|| name.strip_suffix(".txt"))
    else {
        return false;
    };
    let b = stem.as_bytes();
    let shape = b"dddd-dd-ddTdd-dd-dd-dddZ-";
    b.len() > shape.len()
        && shape.iter().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            s => s == c,
        })
}

/// Keeps the newest `keep` failures (each a .png + .txt pair) in `dir`.
/// Only regular files named as wayprobe names its failure artifacts are
/// counted and removed; links, directories and other files are left alone.
fn prune(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_failure_artifact(n))
        .collect();
    names.sort();
    let stem = |n: &str| n[..n.len() - 4].to_string();
    let mut stems: Vec<String> = names.iter().map(|n| stem(n)).collect();
    stems.dedup();
    if stems.len() <= keep {
        return;
    }
    let old: std::collections::HashSet<&String> = stems[..stems.len() - keep].iter().collect();
    for n in names.iter().filter(|n| old.contains(&stem(n))) {
        let p = dir.join(n);
        // Checked again right before removal: still a regular file, not a link.
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_removes_only_old_own_files_never_through_links() {
        let base = std::env::temp_dir().join(format!("wayprobe-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let outside = base.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("2020-01-01T00-00-00-000Z-x.png"), b"keep").unwrap();
        let dir = journey_dir(&base.join("artifacts"), "j").unwrap();
        let mode = std::fs::metadata(base.join("artifacts"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        // A link with an artifact's name, pointing outside, and a foreign file.
        std::os::unix::fs::symlink(
            outside.join("2020-01-01T00-00-00-000Z-x.png"),
            dir.join("2000-01-01T00-00-00-000Z-a.png"),
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
        for i in 0..4 {
            let n = format!("2024-01-0{}T00-00-00-000Z-step", i + 1);
            write_new(&dir, &format!("{n}.png"), b"png").unwrap();
            write_new(&dir, &format!("{n}.txt"), b"txt").unwrap();
        }
        prune(&dir, 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "2000-01-01T00-00-00-000Z-a.png",
                "2024-01-03T00-00-00-000Z-step.png",
                "2024-01-03T00-00-00-000Z-step.txt",
                "2024-01-04T00-00-00-000Z-step.png",
                "2024-01-04T00-00-00-000Z-step.txt",
                "notes.txt",
            ]
        );
        assert!(outside.join("2020-01-01T00-00-00-000Z-x.png").exists());
        // Writing over a link replaces the link, not its target.
        write_new(&dir, "2000-01-01T00-00-00-000Z-a.png", b"new").unwrap();
        assert_eq!(
            std::fs::read(outside.join("2020-01-01T00-00-00-000Z-x.png")).unwrap(),
            b"keep"
        );
        // A journey folder that is a link is refused.
        std::os::unix::fs::symlink(&outside, base.join("artifacts").join("evil")).unwrap();
        assert!(journey_dir(&base.join("artifacts"), "evil").is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}
