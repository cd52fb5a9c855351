//! Reusable steps: fragments files and the `use:` steps that expand them.
//!
//! A YAML file in the journeys directory whose top level is `fragments:`
//! defines named lists of steps with parameters:
//!
//! ```yaml
//! fragments:
//!   login:
//!     params: [user, password]      # or {user: {default: alice}, password: {}}
//!     steps:
//!       - name: open
//!         http: {url: "{{ base_url }}/login"}
//! ```
//!
//! A journey writes `- use: login` with `with: {user: alice}` among its
//! steps. Expansion happens while validating the journey, so a fragment's
//! steps are checked in every journey that uses them, against that
//! journey's variables, secrets and earlier captures; a problem inside a
//! fragment points at the fragment's line and names the `use:` site.
//! Expanded steps are named `<use name>-<step name>` (the use's `name:`,
//! else the fragment's name), so the `step` label stays bounded and stable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::Step;
use super::validate::{Names, Validator, is_label_safe, step_list};
use super::yaml::{Node, SNode};
use crate::diag::{SourceFile, Span, did_you_mean, one_of};
use crate::template::{Scope, Template};

/// Keys of a fragment definition.
pub(super) const FRAGMENT_KEYS: &[&str] = &["description", "params", "steps"];
/// Keys of a `use:` step.
pub(super) const USE_KEYS: &[&str] = &["use", "name", "with"];
/// Keys of a parameter written as a mapping.
pub(super) const PARAM_KEYS: &[&str] = &["default", "description"];
/// How deep fragments may use fragments; deeper is surely a mistake.
const MAX_DEPTH: usize = 8;

/// A fragment as defined. Its steps stay a spanned tree: they are validated
/// where they are used, against the using journey's names.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// The fragment's name (label-safe: it prefixes its steps' names).
    pub name: String,
    /// Where the name is written.
    pub span: Span,
    /// The fragments file.
    pub file: Arc<SourceFile>,
    /// Its parameters, in the order written.
    pub params: Vec<Param>,
    /// Its steps, unvalidated.
    pub steps: Vec<SNode>,
}

/// One parameter of a fragment.
#[derive(Debug, Clone)]
pub struct Param {
    /// The name, read as `{{ params.NAME }}`.
    pub name: String,
    /// The value when a `use:` does not give one; `None` = required.
    pub default: Option<SNode>,
}

/// Every fragment of the loaded files, by name.
pub type Fragments = BTreeMap<String, Fragment>;

/// One `use:` of a fragment, shared by the steps it expanded into.
#[derive(Debug)]
pub struct FragmentUse {
    /// The fragment's name.
    pub fragment: String,
    /// The fragments file (where the steps' spans point).
    pub file: Arc<SourceFile>,
    /// The file the `use:` is written in (a journey, or another fragments
    /// file for a fragment used by a fragment).
    pub used_in: Arc<SourceFile>,
    /// Where the `use:` item is.
    pub used_at: Span,
    /// Parameter values (`with:`, else the defaults), rendered when the
    /// run reaches the first of these steps.
    pub args: Vec<(String, Template)>,
    /// The use this one is written in, for a fragment used by a fragment.
    pub parent: Option<Arc<FragmentUse>>,
    /// Prefix of the expanded step names (`login-`, `checkout-login-`).
    pub prefix: String,
}

impl FragmentUse {
    /// `use: NAME at file:line:col`, innermost first.
    pub fn sites(&self) -> Vec<String> {
        std::iter::successors(Some(self), |u| u.parent.as_deref())
            .map(|u| {
                format!(
                    "in `use: {}` at {}:{}:{}",
                    u.fragment,
                    u.used_in.path.display(),
                    u.used_at.line,
                    u.used_at.col
                )
            })
            .collect()
    }

    /// The outermost use: the `use:` written in the journey itself.
    pub fn outermost(&self) -> &FragmentUse {
        std::iter::successors(Some(self), |u| u.parent.as_deref())
            .last()
            .unwrap_or(self)
    }
}

/// A `with:` value that did not render, where it is written.
#[derive(Debug, Clone)]
pub struct ArgError {
    /// What went wrong, naming the parameter or the secret.
    pub message: String,
    /// The secret it reads that could not be read, if that is why.
    pub secret: Option<String>,
    /// The file the `use:` is written in.
    pub file: Arc<SourceFile>,
    /// The value's template.
    pub span: Span,
}

/// The parameter values of the uses a run is inside, each rendered once,
/// when the run enters the use (so `{{ uuid() }}` is one value per use).
#[derive(Debug, Default)]
pub struct Bindings {
    stack: Vec<(Arc<FragmentUse>, BTreeMap<String, String>)>,
}

impl Bindings {
    /// Sets `scope`'s `params` for a step from `inside` (none: a journey's
    /// own step), rendering the arguments of every use entered. The error
    /// names the parameter, says why it did not render and points at it.
    pub fn enter(
        &mut self,
        inside: Option<&Arc<FragmentUse>>,
        scope: &mut Arc<Scope>,
    ) -> Result<(), ArgError> {
        let mut chain: Vec<&Arc<FragmentUse>> =
            std::iter::successors(inside, |u| u.parent.as_ref()).collect();
        chain.reverse();
        let keep = self
            .stack
            .iter()
            .zip(&chain)
            .take_while(|((a, _), b)| Arc::ptr_eq(a, b))
            .count();
        self.stack.truncate(keep);
        for u in &chain[keep..] {
            // Arguments see the params of the use they are written in.
            Arc::make_mut(scope).params = self.current();
            let mut values = BTreeMap::new();
            for (k, t) in &u.args {
                let at = |message: String, secret: Option<String>| ArgError {
                    message,
                    secret,
                    file: u.used_in.clone(),
                    span: t.span(),
                };
                // A secret that could not be read is the secret's failure
                // (reason `secret`), as when a step reads it directly.
                if let Some((name, why)) = t.refs().iter().find_map(|r| {
                    let n = r.strip_prefix("secret.")?;
                    Some((n, scope.unavailable.get(n)?))
                }) {
                    return Err(at(
                        format!("secret `{name}`: {why}"),
                        Some(name.to_string()),
                    ));
                }
                let v = t.render(scope).map_err(|e| {
                    at(
                        format!("parameter `{k}` of `use: {}`: {e}", u.fragment),
                        None,
                    )
                })?;
                values.insert(k.clone(), v.into_owned());
            }
            self.stack.push(((*u).clone(), values));
        }
        let params = self.current();
        if scope.params != params {
            Arc::make_mut(scope).params = params;
        }
        Ok(())
    }

    fn current(&self) -> BTreeMap<String, String> {
        self.stack
            .last()
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// Whether a parsed file is a fragments file (top level `fragments:`).
pub(super) fn is_fragments_file(root: &SNode) -> bool {
    matches!(&root.node, Node::Map(e) if e.iter().any(|(k, _)| k.name == "fragments"))
}

/// Whether a step item is a `use:` step.
pub(super) fn is_use(item: &SNode) -> bool {
    matches!(&item.node, Node::Map(e) if e.iter().any(|(k, _)| k.name == "use"))
}

/// Reads the fragments of one fragments file into `out`, reporting every
/// problem of its shape (the steps themselves are checked where used).
pub(super) fn define(v: &mut Validator<'_>, root: &SNode, out: &mut Fragments) {
    let Some(f) = v.map(root, "a fragments file", &["fragments"]) else {
        return;
    };
    let Some(n) = f.get("fragments") else { return };
    let entries = match &n.node {
        Node::Map(e) if !e.is_empty() => e,
        _ => {
            v.type_error(n, "`fragments`", "a mapping of named fragments");
            v.diags.last_mut().expect("just pushed").label =
                Some("e.g. `fragments: {login: {params: [user], steps: [...]}}`".into());
            return;
        }
    };
    for (k, val) in entries {
        if !is_label_safe(&k.name) {
            v.error(
                k.span,
                format!("fragment name `{}` is not label-safe", k.name),
            )
            .label = Some(
                "it prefixes the names of its steps: use lower-case letters, digits, `-` and `_`"
                    .into(),
            );
            continue;
        }
        if let Some(prev) = out.get(&k.name) {
            v.error(k.span, format!("duplicate fragment `{}`", k.name))
                .label = Some(format!(
                "also defined at {}:{}:{}",
                prev.file.path.display(),
                prev.span.line,
                prev.span.col
            ));
            continue;
        }
        let Some(ff) = v.map(val, "a fragment", FRAGMENT_KEYS) else {
            continue;
        };
        if let Some(d) = ff.get("description") {
            v.string(d, "description");
        }
        let params = ff.get("params").map(|p| params(v, p)).unwrap_or_default();
        let steps = match ff.get("steps") {
            Some(s) => match &s.node {
                Node::Seq(items) if !items.is_empty() => items.clone(),
                Node::Seq(_) => {
                    v.error(
                        s.span,
                        "`steps` is empty; a fragment needs at least one step",
                    );
                    continue;
                }
                _ => {
                    v.type_error(s, "`steps`", "a list of steps");
                    continue;
                }
            },
            None => {
                v.error(k.span, format!("fragment `{}` needs `steps:`", k.name))
                    .label = Some("add the list of steps it stands for".into());
                continue;
            }
        };
        out.insert(
            k.name.clone(),
            Fragment {
                name: k.name.clone(),
                span: k.span,
                file: v.file.clone(),
                params,
                steps,
            },
        );
    }
}

/// `params: [a, b]` or `params: {a: {default: x}, b: {}}`.
fn params(v: &mut Validator<'_>, n: &SNode) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    let mut add = |v: &mut Validator<'_>, name: &str, span: Span, default: Option<SNode>| {
        if !v.identifier(span, name, "parameter") {
            return;
        }
        if out.iter().any(|p| p.name == name) {
            v.error(span, format!("duplicate parameter `{name}`"));
            return;
        }
        out.push(Param {
            name: name.to_string(),
            default,
        });
    };
    match &n.node {
        Node::Seq(items) => {
            for item in items {
                if let Some(name) = v.string(item, "a parameter name") {
                    add(v, &name, item.span, None);
                }
            }
        }
        Node::Map(entries) => {
            for (k, val) in entries {
                let default = match &val.node {
                    Node::Null => None,
                    _ => v
                        .map(val, "a parameter", PARAM_KEYS)
                        .and_then(|f| f.get("default").cloned()),
                };
                add(v, &k.name, k.span, default);
            }
        }
        Node::Null => {}
        _ => v.type_error(n, "`params`", "a list of names or a mapping"),
    }
    out
}

/// Expands one `use:` step into the fragment's validated steps. `inside`
/// is the use this one is written in (a fragment using a fragment).
pub(super) fn expand(
    v: &mut Validator<'_>,
    item: &SNode,
    names: &mut Names,
    base: &Path,
    inside: Option<&Arc<FragmentUse>>,
) -> Vec<Step> {
    let Some(f) = v.map(item, "a `use:` step", USE_KEYS) else {
        return Vec::new();
    };
    let use_node = f.get("use").expect("is_use checked");
    let Some(frag_name) = v.string(use_node, "`use`") else {
        return Vec::new();
    };
    let fragments = v.fragments;
    let Some(frag) = fragments.get(&frag_name) else {
        let known: Vec<&str> = fragments.keys().map(String::as_str).collect();
        let label = match did_you_mean(&frag_name, &known) {
            Some(s) => format!("did you mean `{s}`?"),
            None if known.is_empty() => "define it in a fragments file next to the journeys: `fragments: {NAME: {steps: [...]}}`".into(),
            None => format!("the fragments are {}", one_of(&known)),
        };
        v.error(use_node.span, format!("unknown fragment `{frag_name}`"))
            .label = Some(label);
        return Vec::new();
    };
    let chain: Vec<&str> = std::iter::successors(inside, |u| u.parent.as_ref())
        .map(|u| u.fragment.as_str())
        .collect();
    if chain.contains(&frag_name.as_str()) {
        let mut path: Vec<&str> = chain.iter().rev().copied().collect();
        path.push(&frag_name);
        v.error(
            use_node.span,
            format!("fragment `{frag_name}` uses itself ({})", path.join(" → ")),
        )
        .label = Some("a fragment cannot use itself, directly or through another".into());
        return Vec::new();
    }
    if chain.len() >= MAX_DEPTH {
        v.error(use_node.span, "fragments are nested too deeply")
            .label = Some(format!("at most {MAX_DEPTH} levels of `use:`"));
        return Vec::new();
    }
    let prefix = match f.get("name") {
        Some(n) => match v.string(n, "`name`") {
            Some(s) if is_label_safe(&s) => s,
            Some(s) => {
                v.error(n.span, format!("`name` `{s}` is not label-safe"))
                    .label = Some(
                    "it prefixes the step names: use lower-case letters, digits, `-` and `_`"
                        .into(),
                );
                return Vec::new();
            }
            None => return Vec::new(),
        },
        None => frag.name.clone(),
    };

    // Arguments: written in this file, seen with this file's names.
    let declared: Vec<&str> = frag.params.iter().map(|p| p.name.as_str()).collect();
    let mut given: BTreeMap<String, Template> = BTreeMap::new();
    if let Some(w) = f.get("with") {
        match &w.node {
            Node::Map(entries) => {
                for (k, val) in entries {
                    if !declared.contains(&k.name.as_str()) {
                        let label = match did_you_mean(&k.name, &declared) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None if declared.is_empty() => {
                                format!("`{frag_name}` takes no parameters")
                            }
                            None => format!("`{frag_name}` takes {}", one_of(&declared)),
                        };
                        v.error(
                            k.span,
                            format!("unknown parameter `{}` of fragment `{frag_name}`", k.name),
                        )
                        .label = Some(label);
                        continue;
                    }
                    if let Some(t) = v.template(val, &format!("parameter `{}`", k.name), names) {
                        given.insert(k.name.clone(), t);
                    }
                }
            }
            Node::Null => {}
            _ => v.type_error(w, "`with`", "a mapping of parameter values"),
        }
    }
    let missing: Vec<&str> = frag
        .params
        .iter()
        .filter(|p| p.default.is_none() && !given.contains_key(&p.name))
        .map(|p| p.name.as_str())
        .collect();
    if !missing.is_empty() {
        let s = if missing.len() == 1 { "" } else { "s" };
        v.error(
            use_node.span,
            format!(
                "`use: {frag_name}` is missing parameter{s} {}",
                one_of(&missing)
            ),
        )
        .label = Some(format!(
            "add `with: {{{}}}`",
            missing
                .iter()
                .map(|m| format!("{m}: ..."))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let outer_file = v.file;
    let used_in = v.file.clone();
    let before = v.diags.len();
    v.file = &frag.file;
    // Defaults are written in the fragment; they see the journey's names.
    let outer_params = names.params.take();
    let mut args = Vec::new();
    for p in &frag.params {
        if let Some(t) = given.remove(&p.name) {
            args.push((p.name.clone(), t));
        } else if let Some(d) = &p.default
            && let Some(t) = v.template(d, &format!("the default of `{}`", p.name), names)
        {
            args.push((p.name.clone(), t));
        }
    }
    let u = Arc::new(FragmentUse {
        fragment: frag_name.clone(),
        file: frag.file.clone(),
        used_in: used_in.clone(),
        used_at: item.span,
        args,
        parent: inside.cloned(),
        prefix: format!(
            "{}{prefix}-",
            inside.map(|u| u.prefix.as_str()).unwrap_or_default()
        ),
    });
    names.params = Some((
        frag_name.clone(),
        declared
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
    ));
    let steps = step_list(v, &frag.steps, names, base, Some(&u));
    names.params = outer_params;
    v.file = outer_file;
    // Every problem found inside names the place that used the fragment
    // (a nested use adds its own site first).
    let site = u.sites().remove(0);
    for d in &mut v.diags[before..] {
        d.notes.push(site.clone());
    }
    steps
}
