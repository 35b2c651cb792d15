//! The compliance work commands (`entity`, `doc`, `eval`, `locks`, `users`):
//! the same operations as the API, run as the local administrator.

use crate::cli::{open, out, ChangesCommand, DocCommand, EntityCommand, UsersCommand};
use crate::Error;
use appliance::changes::Change;
use appliance::compliance::Verdict;
use appliance::documents::DocumentInput;
use appliance::entities::{EntityInput, Relationship};
use appliance::Actor;
use std::io::Read;
use std::path::Path;

fn read_input(file: &Path) -> Result<Vec<u8>, Error> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Error::Usage(format!("read standard input: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(file).map_err(|e| Error::Usage(format!("read {}: {e}", file.display())))
}

fn lines(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join("\n")
}

pub(crate) fn entity(json: bool, command: EntityCommand) -> Result<(), Error> {
    match command {
        EntityCommand::Add { data, file } => {
            let bytes = read_input(&file)?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Usage(format!("{}: not JSON: {e}", file.display())))?;
            let items = match value {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            };
            let mut inputs = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                inputs.push(
                    serde_json::from_value::<EntityInput>(item).map_err(|e| {
                        Error::Usage(format!("{} entity #{i}: {e}", file.display()))
                    })?,
                );
            }
            let added = open(&data)?.add_entities(&Actor::cli(), inputs)?;
            out(json, &added, |es| {
                lines(
                    es.iter()
                        .map(|e| format!("added {} {} ({})", e.kind.as_str(), e.id, e.name)),
                )
            })
        }
        EntityCommand::List { data, kind } => {
            let a = open(&data)?;
            let kind = kind.map(|k| k.parse()).transpose()?;
            let es = a.store().entities(kind, usize::MAX >> 1, 0)?;
            out(json, &es, |es| {
                lines(es.iter().map(|e| {
                    format!(
                        "{:9} {:24} {:32} {}",
                        e.kind.as_str(),
                        e.id,
                        e.name,
                        e.category.as_deref().unwrap_or("-")
                    )
                }))
            })
        }
        EntityCommand::Show { data, id } => {
            let a = open(&data)?;
            let st = a.store();
            let v = serde_json::json!({
                "entity": st.entity(&id)?,
                "documents": st.documents(Some(&id))?,
                "latest_evaluation": st.evaluations(Some(&id), 1)?.into_iter().next(),
            });
            out(json, &v, |v| {
                serde_json::to_string_pretty(v).unwrap_or_default()
            })
        }
        EntityCommand::WhereUsed { data, cas } => {
            let a = open(&data)?;
            let used = a.store().where_used(&cas)?;
            out(json, &used, |us| {
                lines(
                    us.iter()
                        .map(|u| format!("{:24} {}  ({})", u.id, u.name, u.path.join(" <- "))),
                )
            })
        }
        EntityCommand::Relate {
            data,
            src,
            rel,
            dst,
        } => {
            let r: Relationship =
                serde_json::from_value(serde_json::json!({ "src": src, "rel": rel, "dst": dst }))
                    .map_err(|_| {
                    Error::Usage(format!("relationship {rel:?}: use contains or supplies"))
                })?;
            open(&data)?.relate(&Actor::cli(), &r)?;
            out(json, &r, |r| format!("{} {rel} {}", r.src, r.dst))
        }
    }
}

pub(crate) fn doc(json: bool, command: DocCommand) -> Result<(), Error> {
    match command {
        DocCommand::Add {
            data,
            kind,
            entity,
            expires,
            file,
        } => {
            let bytes = read_input(&file)?;
            let filename = file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "upload".into());
            let mut a = open(&data)?;
            let d = a.add_document(
                &Actor::cli(),
                DocumentInput {
                    kind,
                    filename,
                    entity,
                    expires,
                },
                &bytes,
            )?;
            out(json, &d, |d| {
                format!(
                    "added document {} ({}, {} bytes, {} characters of text)",
                    d.id, d.media_type, d.size, d.text_chars
                )
            })
        }
        DocCommand::List { data, entity } => {
            let a = open(&data)?;
            let ds = a.store().documents(entity.as_deref())?;
            out(json, &ds, |ds| {
                lines(ds.iter().map(|d| {
                    format!(
                        "{:16} {:8} {:32} {}",
                        d.id,
                        d.kind,
                        d.filename,
                        d.entity.as_deref().unwrap_or("-")
                    )
                }))
            })
        }
    }
}

pub(crate) fn eval(
    json: bool,
    data: &Path,
    all: bool,
    replay: Option<String>,
    as_of: Option<String>,
    products: Vec<String>,
) -> Result<(), Error> {
    let mut a = open(data)?;
    if let Some(lock) = replay {
        let r = a.replay(&lock)?;
        // The replayed result exactly as produced, so it can be compared byte for byte.
        println!("{}", String::from_utf8_lossy(&r.bytes));
        if !r.identical {
            return Err(Error::Usage(format!(
                "replay of lock {lock} differs from the stored result (locked by {}, replayed by {}); investigate before relying on it",
                r.kernel_build_locked, r.kernel_build_now
            )));
        }
        eprintln!("replay identical to the stored result of lock {lock}");
        return Ok(());
    }
    let ids = if all {
        a.product_ids()?
    } else if products.is_empty() {
        return Err(Error::Usage("name products to evaluate, or --all".into()));
    } else {
        products
    };
    let outcomes = a.evaluate_as_of(&Actor::cli(), &ids, as_of.as_deref())?;
    out(json, &outcomes, |os| lines(os.iter().map(outcome_text)))
}

/// One product's verdict in a few lines: each finding under its own verdict
/// (a needs-review finding of a failing product is not a failure), and the
/// same advice for the same component given once, naming every rule that
/// asked for it.
fn outcome_text(o: &appliance::compliance::Outcome) -> String {
    type Finding<'a> = (Verdict, &'a str, &'a str);
    let mut findings: Vec<(Finding, Vec<&str>)> = Vec::new();
    let mut duties: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in &o.evaluation.rules {
        for step in r.trace.iter().filter(|s| s.verdict != Verdict::Pass) {
            let key = (step.verdict, step.subject.as_str(), step.detail.as_str());
            match findings.iter_mut().find(|(k, _)| *k == key) {
                Some((_, rules)) => rules.push(&r.rule),
                None => findings.push((key, vec![&r.rule])),
            }
        }
        for ob in &r.obligations {
            match duties.iter_mut().find(|(d, _)| d == ob) {
                Some((_, rules)) => rules.push(&r.rule),
                None => duties.push((ob, vec![&r.rule])),
            }
        }
    }
    let mut s = format!(
        "{:24} {:13} lock {}",
        o.product_id,
        verdict_label(o.verdict),
        o.lock_id
    );
    for ((verdict, subject, detail), rules) in findings {
        s.push_str(&format!(
            "\n    {} {subject}: {detail} ({})",
            verdict_label(verdict),
            rules.join(", ")
        ));
    }
    for (duty, rules) in duties {
        s.push_str(&format!("\n    duty: {duty} ({})", rules.join(", ")));
    }
    // What the tables consulted cover (and what none of them lists), so a
    // product without findings does not read as checked against everything.
    let coverage = o
        .evaluation
        .rules
        .iter()
        .filter(|r| r.pack == kernel::FORMULATION_PACK && r.rule == kernel::FORMULATION_RULE)
        .flat_map(|r| &r.trace)
        .find(|step| step.subject == "coverage");
    if let Some(step) = coverage {
        s.push_str(&format!("\n    coverage: {}", step.detail));
    }
    s
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::NeedsReview => "needs review",
        Verdict::Fail => "fail",
    }
}

pub(crate) fn locks(
    json: bool,
    data: &Path,
    product: Option<String>,
    show: Option<String>,
) -> Result<(), Error> {
    let a = open(data)?;
    if let Some(id) = show {
        let lock = a.store().lock(&id)?;
        return out(json, &lock, |l| {
            serde_json::to_string_pretty(l).unwrap_or_default()
        });
    }
    let locks = a.store().locks(product.as_deref(), 1000)?;
    out(json, &locks, |ls| {
        lines(ls.iter().map(|l| {
            format!(
                "{} {:24} {:13} {} packs {}",
                l.id,
                l.product_id,
                format!("{:?}", l.verdict),
                l.created_at,
                l.content.packs.len()
            )
        }))
    })
}

/// What `spoke lifecycle` was asked to do.
pub(crate) struct LifecycleArgs {
    pub set: Option<String>,
    pub reason: String,
    pub as_admin: Option<String>,
    pub cooling_off_days: Option<u32>,
}

/// `spoke lifecycle`: shows the state, or changes it (and the cooling-off
/// period) as the local console or as a signed-in administrator.
pub(crate) fn lifecycle(json: bool, data: &Path, args: LifecycleArgs) -> Result<(), Error> {
    let mut a = open(data)?;
    let (actor, session) = match &args.as_admin {
        Some(name) => {
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).map_err(|e| {
                Error::Usage(format!("read {name}'s password from standard input: {e}"))
            })?;
            let issued =
                a.store_mut()
                    .login(name, password.trim_end_matches(['\r', '\n']), "cli")?;
            let actor = a.store_mut().authenticate(&issued.secret, "cli")?;
            (actor, Some(issued.id))
        }
        None => (Actor::cli(), None),
    };
    let result = lifecycle_as(&mut a, &actor, &args);
    if let Some(id) = session {
        if let Err(e) = a.store_mut().revoke_token(&actor, &id) {
            tracing::warn!("ending the sign-in session of {}: {e}", actor.name);
        }
    }
    let value = result?;
    out(json, &value, |v| {
        let mut text = format!("lifecycle {}", v["state"].as_str().unwrap_or("?"));
        if let Some(r) = v["release_request"].as_object() {
            text.push_str(&format!(
                "\nrelease to {} asked by {} at {}: another administrator must confirm it with the same command",
                r["to"].as_str().unwrap_or("?"),
                r["by"].as_str().unwrap_or("?"),
                r["at"].as_str().unwrap_or("?")
            ));
        }
        if let Some(until) = v["cooling_off_until"].as_str() {
            text.push_str(&format!(
                "\nno decommissioning before {until} (cooling-off)"
            ));
        }
        text
    })
}

fn lifecycle_as(
    a: &mut appliance::Appliance,
    actor: &Actor,
    args: &LifecycleArgs,
) -> Result<serde_json::Value, Error> {
    if let Some(days) = args.cooling_off_days {
        a.set_cooling_off_days(actor, days)?;
    }
    let changed = match &args.set {
        Some(s) => Some(a.set_lifecycle(actor, s.parse()?, &args.reason)?),
        None => None,
    };
    let mut value =
        serde_json::to_value(a.lifecycle_view()?).map_err(|e| Error::Usage(e.to_string()))?;
    if let Some(c) = changed {
        value["result"] =
            serde_json::to_value(&c).map_err(|e| Error::Usage(e.to_string()))?["result"].clone();
    }
    Ok(value)
}

pub(crate) fn users(json: bool, command: UsersCommand) -> Result<(), Error> {
    match command {
        UsersCommand::Add { data, name, role } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| Error::Usage(format!("read the password from standard input: {e}")))?;
            let mut a = open(&data)?;
            let u = a.store_mut().create_user(
                &Actor::cli(),
                &name,
                role.parse()?,
                password.trim_end_matches(['\r', '\n']),
            )?;
            out(json, &u, |u| {
                format!("created user {} ({})", u.name, u.role.as_str())
            })
        }
        UsersCommand::List { data } => {
            let a = open(&data)?;
            let us = a.store().users()?;
            out(json, &us, |us| {
                lines(
                    us.iter()
                        .map(|u| format!("{:24} {}", u.name, u.role.as_str())),
                )
            })
        }
        UsersCommand::Token {
            data,
            user,
            label,
            hours,
        } => {
            let mut a = open(&data)?;
            let t = a
                .store_mut()
                .create_token(&Actor::cli(), &user, &label, hours)?;
            out(json, &t, |t| {
                format!("token {} for {user}: {}", t.id, t.secret)
            })
        }
        UsersCommand::Unlock {
            data,
            name,
            address,
        } => {
            let mut a = open(&data)?;
            let u = a
                .store_mut()
                .unlock(&Actor::cli(), name.as_deref(), address.as_deref())?;
            out(json, &u, |u| {
                if u.cleared.is_empty() {
                    "nothing to unlock: no failed attempts are counted for what you named".into()
                } else {
                    format!("unlocked: {}", u.cleared.join(", "))
                }
            })
        }
    }
}

/// A change in a few lines: what moves, how it is decided, what verdicts it alters.
pub(crate) fn describe_change(c: &Change) -> String {
    let mut s = format!(
        "change {} [{}] by {}:",
        c.id,
        c.status,
        c.mode.replace('_', " ")
    );
    for m in &c.packs {
        let from = m
            .from
            .as_ref()
            .map_or("(new)".to_string(), |p| p.version.clone());
        s.push_str(&format!("\n    {} {} -> {}", m.name, from, m.to.version));
    }
    s.push_str(&format!(
        "\n  simulator: {} products re-evaluated, {} verdicts change",
        c.diff.products,
        c.diff.changes.len()
    ));
    for v in &c.diff.changes {
        let name = |v: Option<Verdict>| v.map_or("-".to_string(), |v| format!("{v:?}"));
        s.push_str(&format!(
            "\n    {:20} {:48} {} -> {}",
            v.product,
            v.rule,
            name(v.before),
            name(v.after)
        ));
    }
    if c.status == "pending" {
        s.push_str(&format!("\n  approve: spoke changes approve --data D {}   reject: spoke changes reject --data D {}", c.id, c.id));
    }
    s
}

pub(crate) fn changes(json: bool, command: ChangesCommand) -> Result<(), Error> {
    match command {
        ChangesCommand::List { data } => {
            let cs = open(&data)?.store().changes()?;
            out(json, &cs, |cs| {
                if cs.is_empty() {
                    return "no changes".into();
                }
                lines(cs.iter().map(|c| {
                    let packs: Vec<String> = c
                        .packs
                        .iter()
                        .map(|m| format!("{} {}", m.name, m.to.version))
                        .collect();
                    format!(
                        "{} {:8} {:16} {:3} verdict changes  {}",
                        c.id,
                        c.status,
                        c.mode,
                        c.diff.changes.len(),
                        packs.join(", ")
                    )
                }))
            })
        }
        ChangesCommand::Show { data, id } => {
            let c = open(&data)?.store().change(&id)?;
            out(json, &c, describe_change)
        }
        ChangesCommand::Approve { data, id } => {
            let c = open(&data)?.decide(&Actor::cli(), &id, true)?;
            out(json, &c, describe_change)
        }
        ChangesCommand::Reject { data, id } => {
            let c = open(&data)?.decide(&Actor::cli(), &id, false)?;
            out(json, &c, describe_change)
        }
        ChangesCommand::Rollback { data, id } => {
            let c = open(&data)?.rollback(&Actor::cli(), &id)?;
            out(json, &c, describe_change)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appliance::compliance::{Evaluation, Outcome};
    use kernel::{RuleOutcome, Step};

    fn rule(id: &str, steps: &[(Verdict, &str, &str)], duties: &[&str]) -> RuleOutcome {
        RuleOutcome {
            pack: "p".into(),
            rule: id.into(),
            kind: "k".into(),
            title: None,
            verdict: steps.iter().map(|s| s.0).max().unwrap_or(Verdict::Pass),
            obligations: duties.iter().map(|d| d.to_string()).collect(),
            trace: steps
                .iter()
                .map(|(v, subject, detail)| Step {
                    subject: subject.to_string(),
                    check: "c".into(),
                    verdict: *v,
                    detail: detail.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn each_finding_shows_its_own_verdict_and_repeated_advice_appears_once() {
        let rules = vec![
            rule(
                "annex-ii",
                &[
                    (Verdict::Fail, "lead acetate", "prohibited"),
                    (Verdict::NeedsReview, "aqua", "add the CAS number"),
                ],
                &["Contains limonene"],
            ),
            rule(
                "annex-iii",
                &[
                    (Verdict::Pass, "glycerin", "not listed"),
                    (Verdict::NeedsReview, "aqua", "add the CAS number"),
                ],
                &["Contains limonene"],
            ),
        ];
        let o = Outcome {
            product_id: "prod-1".into(),
            lock_id: "L".into(),
            verdict: Verdict::Fail,
            evaluation: Evaluation {
                verdict: Verdict::Fail,
                rules,
                fuel_used: 1,
            },
        };
        let text = outcome_text(&o);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(lines[0].starts_with("prod-1") && lines[0].contains("fail"));
        assert_eq!(
            &lines[1..],
            [
                "fail lead acetate: prohibited (annex-ii)",
                "needs review aqua: add the CAS number (annex-ii, annex-iii)",
                "duty: Contains limonene (annex-ii, annex-iii)",
            ]
        );
    }

    /// #26 item 3: the text says what the tables cover, even for a pass.
    #[test]
    fn the_coverage_statement_is_printed() {
        let mut formulation = rule(
            kernel::FORMULATION_RULE,
            &[(
                Verdict::Pass,
                "coverage",
                "consulted @d:t (3 entries); not covered by any of them: Aqua (7732-18-5)",
            )],
            &[],
        );
        formulation.pack = kernel::FORMULATION_PACK.into();
        let o = Outcome {
            product_id: "prod-1".into(),
            lock_id: "L".into(),
            verdict: Verdict::Pass,
            evaluation: Evaluation {
                verdict: Verdict::Pass,
                rules: vec![formulation],
                fuel_used: 1,
            },
        };
        let text = outcome_text(&o);
        assert_eq!(
            text.lines().nth(1).map(str::trim),
            Some("coverage: consulted @d:t (3 entries); not covered by any of them: Aqua (7732-18-5)")
        );
    }
}
