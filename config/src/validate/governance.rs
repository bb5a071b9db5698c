//! Validation of the governance sections: `[[orgs]]`, `[[teams]]`, `[[users]]`, the ownership,
//! allow-list, expiry and `limits` of `[[keys]]`, `[[prices]]`, `[governance]`, `[store]` and
//! `[admin]`. References (a team's org, a key's user) must name an entity declared in the file.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use toml::Value;

use super::{describe, join, Validator, Zero};
use crate::governance::{
    parse_budget, parse_timestamp, parse_usd, Budget, KeyOwner, Limits, Nanos, OrgConfig,
    TeamConfig, TokenCount, UserConfig,
};
use crate::raw::{RawAdmin, RawEntity, RawGovernance, RawLimits, RawPrice, RawStore};
use crate::secret::Secret;
use crate::types::{AdminConfig, GovernanceConfig, PriceConfig, StoreConfig, UnknownPrice};
use crate::units::quote;

/// What `[[keys]]` adds for governance: owner, model allow-list, expiry (unix seconds), limits.
pub(super) type KeyGovernance = (KeyOwner, Option<Vec<String>>, Option<u64>, Limits);

/// One `[[orgs]]`, `[[teams]]` or `[[users]]` entry as read, before its references resolve.
struct Entity {
    name: String,
    team: Option<String>,
    org: Option<String>,
    limits: Limits,
    guardrails: Option<String>,
}

/// The declared entities, by name, for resolving references.
pub(super) struct Hierarchy {
    pub orgs: Vec<OrgConfig>,
    pub teams: Vec<TeamConfig>,
    pub users: Vec<UserConfig>,
}

impl Validator<'_> {
    /// `[[orgs]]`, `[[teams]]` and `[[users]]`, with their references checked.
    pub(super) fn hierarchy(
        &mut self,
        orgs: Option<Value>,
        teams: Option<Value>,
        users: Option<Value>,
        models: &[String],
        profiles: &[String],
    ) -> Hierarchy {
        let orgs: Vec<OrgConfig> = self
            .entities("orgs", orgs, models, profiles, &[])
            .into_iter()
            .map(|e| OrgConfig {
                name: e.name,
                limits: e.limits,
                guardrails: e.guardrails,
            })
            .collect();
        let org_names: Vec<&str> = orgs.iter().map(|o| o.name.as_str()).collect();
        let teams: Vec<TeamConfig> = self
            .entities("teams", teams, models, profiles, &["org"])
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                self.reference(
                    &format!("teams[{i}].org"),
                    e.org.as_deref(),
                    "org",
                    &org_names,
                );
                TeamConfig {
                    name: e.name,
                    org: e.org,
                    limits: e.limits,
                    guardrails: e.guardrails,
                }
            })
            .collect();
        let team_names: Vec<&str> = teams.iter().map(|t| t.name.as_str()).collect();
        let users: Vec<UserConfig> = self
            .entities("users", users, models, profiles, &["team", "org"])
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let Entity {
                    name,
                    team,
                    org,
                    limits,
                    guardrails,
                } = e;
                let path = format!("users[{i}]");
                self.reference(&join(&path, "team"), team.as_deref(), "team", &team_names);
                self.reference(&join(&path, "org"), org.as_deref(), "org", &org_names);
                if team.is_some() && org.is_some() {
                    self.error(
                        &join(&path, "org"),
                        "give a user a team or an org, not both (the team names its org)",
                    );
                }
                UserConfig {
                    name,
                    team,
                    org,
                    limits,
                    guardrails,
                }
            })
            .collect();
        Hierarchy { orgs, teams, users }
    }

    /// One array of entities: each valid entry, its references not yet resolved (but its
    /// guardrail profile checked against `profiles`).
    fn entities(
        &mut self,
        section: &str,
        value: Option<Value>,
        models: &[String],
        profiles: &[String],
        references: &[&str],
    ) -> Vec<Entity> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, value) in self.array_of_tables(section, value).into_iter().enumerate() {
            let path = format!("{section}[{i}]");
            let Some(raw) = self.shape::<RawEntity>(&path, value) else {
                continue;
            };
            let name = self.required(&join(&path, "name"), raw.name);
            let name = self.name(&join(&path, "name"), name);
            let reference = |v: &mut Self, key: &str, value: Option<Value>| {
                if value.is_some() && !references.contains(&key) {
                    v.error(&join(&path, key), format!("{section} have no `{key}`"));
                    return None;
                }
                v.name(&join(&path, key), value)
            };
            let team = reference(self, "team", raw.team);
            let org = reference(self, "org", raw.org);
            let limits = self.limits_table(&join(&path, "limits"), raw.limits, models, true);
            let guardrails =
                self.profile_reference(&join(&path, "guardrails"), raw.guardrails, profiles);
            let Some(name) = name else { continue };
            if let Some(first) = seen.get(&name) {
                self.error(
                    &join(&path, "name"),
                    format!("duplicate name {} (also {section}[{first}])", quote(&name)),
                );
                continue;
            }
            seen.insert(name.clone(), i);
            out.push(Entity {
                name,
                team,
                org,
                limits: limits.unwrap_or_default(),
                guardrails,
            });
        }
        out
    }

    /// Reports `name` unless it is one of `known` ("unknown team \"x\" (declared: a, b)").
    pub(super) fn reference(&mut self, path: &str, name: Option<&str>, what: &str, known: &[&str]) {
        if let Some(name) = name {
            if !known.contains(&name) {
                let list = if known.is_empty() {
                    format!("no {what}s are declared")
                } else {
                    format!("declared: {}", known.join(", "))
                };
                self.error(path, format!("unknown {what} {} ({list})", quote(name)));
            }
        }
    }

    /// The ownership, allow-list, expiry and limits of one `[[keys]]` entry.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn key_governance(
        &mut self,
        path: &str,
        user: Option<Value>,
        team: Option<Value>,
        org: Option<Value>,
        allowed: Option<Value>,
        expires: Option<Value>,
        limits: Option<Value>,
        hierarchy: &Hierarchy,
        models: &[String],
    ) -> Option<KeyGovernance> {
        let owner = KeyOwner {
            user: self.name(&join(path, "user"), user),
            team: self.name(&join(path, "team"), team),
            org: self.name(&join(path, "org"), org),
        };
        let owners = [&owner.user, &owner.team, &owner.org]
            .iter()
            .filter(|o| o.is_some())
            .count();
        if owners > 1 {
            self.error(
                path,
                "a key belongs to one of `user`, `team` or `org` (the others follow from it)",
            );
        }
        let users: Vec<&str> = hierarchy.users.iter().map(|u| u.name.as_str()).collect();
        self.reference(&join(path, "user"), owner.user.as_deref(), "user", &users);
        let teams: Vec<&str> = hierarchy.teams.iter().map(|t| t.name.as_str()).collect();
        self.reference(&join(path, "team"), owner.team.as_deref(), "team", &teams);
        let orgs: Vec<&str> = hierarchy.orgs.iter().map(|o| o.name.as_str()).collect();
        self.reference(&join(path, "org"), owner.org.as_deref(), "org", &orgs);

        let allowed = match allowed {
            None => None,
            Some(value) => self.model_list(&join(path, "models"), value, models),
        };
        let expires = match expires {
            None => None,
            Some(value) => {
                let text = self.string(&join(path, "expires"), Some(value))?;
                match parse_timestamp(&text) {
                    Ok(t) => Some(t),
                    Err(why) => {
                        self.error(&join(path, "expires"), why);
                        return None;
                    }
                }
            }
        };
        let limits = self.limits_table(&join(path, "limits"), limits, models, true)?;
        Some((owner, allowed, expires, limits))
    }

    fn model_list(&mut self, path: &str, value: Value, models: &[String]) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.error(
                path,
                format!("expected an array of model names, got {}", describe(&value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(name) = self.string(&item_path, Some(item)) else {
                continue;
            };
            if !models.contains(&name) {
                self.error(&item_path, format!("unknown model {}", quote(&name)));
                continue;
            }
            out.push(name);
        }
        Some(out)
    }

    /// A standalone `limits` table (admin API, CLI).
    pub(super) fn limits_value(&mut self, value: Value, models: &[String]) -> Option<Limits> {
        self.limits_table("limits", Some(value), models, true)
    }

    /// A `limits` table; `nested` allows a `models` sub-table (not within one).
    fn limits_table(
        &mut self,
        path: &str,
        value: Option<Value>,
        models: &[String],
        nested: bool,
    ) -> Option<Limits> {
        let Some(value) = value else {
            return Some(Limits::default());
        };
        let raw: RawLimits = self.shape(path, value)?;
        let p = |key: &str| join(path, key);
        let rpm = self.integer(&p("rpm"), raw.rpm, 1..=u64::from(u32::MAX));
        let tpm = self.integer(&p("tpm"), raw.tpm, 1..=(1 << 50));
        let tpm_counts = match raw.tpm_counts {
            None => TokenCount::Total,
            Some(v) => self
                .choice(
                    &p("tpm_counts"),
                    Some(v),
                    &[
                        ("input", TokenCount::Input),
                        ("output", TokenCount::Output),
                        ("total", TokenCount::Total),
                    ],
                )
                .unwrap_or_default(),
        };
        let max_parallel = self.integer(&p("max_parallel"), raw.max_parallel, 1..=1_000_000);
        let mut budgets = self.budgets(&p("budget"), raw.budget, false);
        budgets.extend(self.budgets(&p("soft_budget"), raw.soft_budget, true));
        let mut per_model = BTreeMap::new();
        if let Some(value) = raw.models {
            if !nested {
                self.error(&p("models"), "per-model limits cannot be nested");
            } else if let Value::Table(table) = value {
                for (model, limits) in table {
                    let model_path = join(&p("models"), &model);
                    if !models.contains(&model) {
                        self.error(&model_path, format!("unknown model {}", quote(&model)));
                        continue;
                    }
                    if let Some(limits) =
                        self.limits_table(&model_path, Some(limits), models, false)
                    {
                        per_model.insert(model, limits);
                    }
                }
            } else {
                self.error(
                    &p("models"),
                    format!("expected a table of model names, got {}", describe(&value)),
                );
            }
        }
        Some(Limits {
            rpm: rpm.map(|n| n as u64),
            tpm: tpm.map(|n| n as u64),
            tpm_counts,
            max_parallel: max_parallel.map(|n| n as u64),
            budgets,
            models: per_model,
        })
    }

    /// `budget = "50usd/month"` or `budget = ["5usd/day", "50usd/month"]`.
    fn budgets(&mut self, path: &str, value: Option<Value>, soft: bool) -> Vec<Budget> {
        let items = match value {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => vec![other],
        };
        let mut out = Vec::new();
        for item in items {
            let Some(text) = self.string(path, Some(item)) else {
                continue;
            };
            match parse_budget(&text) {
                Ok(budget) if budget.amount == 0 => self.error(
                    path,
                    format!("{} is zero; remove it or give an amount", quote(&text)),
                ),
                Ok(budget) => out.push(Budget { soft, ..budget }),
                Err(why) => self.error(path, why),
            }
        }
        out
    }

    /// `[[prices]]`: dollars per million tokens.
    pub(super) fn prices(&mut self, value: Option<Value>) -> Vec<PriceConfig> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, value) in self
            .array_of_tables("prices", value)
            .into_iter()
            .enumerate()
        {
            let path = format!("prices[{i}]");
            let Some(raw) = self.shape::<RawPrice>(&path, value) else {
                continue;
            };
            let model = self.required(&join(&path, "model"), raw.model);
            let model = self.string(&join(&path, "model"), model);
            let input = self.required(&join(&path, "input"), raw.input);
            let input = self.money(&join(&path, "input"), input);
            let output = self.required(&join(&path, "output"), raw.output);
            let output = self.money(&join(&path, "output"), output);
            let cached_input = self.money(&join(&path, "cached_input"), raw.cached_input);
            let (Some(model), Some(input), Some(output)) = (model, input, output) else {
                continue;
            };
            if let Some(first) = seen.get(&model) {
                self.error(
                    &join(&path, "model"),
                    format!(
                        "duplicate price for {} (also prices[{first}])",
                        quote(&model)
                    ),
                );
                continue;
            }
            seen.insert(model.clone(), i);
            out.push(PriceConfig {
                model,
                input,
                output,
                cached_input,
            });
        }
        out
    }

    /// Dollars as a number (`0.15`) or a string (`"0.15usd"`).
    fn money(&mut self, path: &str, value: Option<Value>) -> Option<Nanos> {
        let text = match self.interpolated(path, value?)? {
            Value::Float(x) if x >= 0.0 && x.is_finite() => format!("{x}"),
            Value::Integer(n) if n >= 0 => n.to_string(),
            Value::String(text) => text,
            other => {
                self.error(
                    path,
                    format!(
                        "expected dollars like 0.15 or \"0.15usd\", got {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        match parse_usd(&text) {
            Ok(n) => Some(n),
            Err(why) => {
                self.error(path, why);
                None
            }
        }
    }

    pub(super) fn governance(&mut self, value: Option<Value>) -> Option<GovernanceConfig> {
        let d = GovernanceConfig::default();
        let Some(value) = value else { return Some(d) };
        let raw: RawGovernance = self.shape("governance", value)?;
        let p = |key: &str| join("governance", key);
        Some(GovernanceConfig {
            unknown_price: match raw.unknown_price {
                None => d.unknown_price,
                v => self.choice(
                    &p("unknown_price"),
                    v,
                    &[
                        ("allow", UnknownPrice::Allow),
                        ("block", UnknownPrice::Block),
                    ],
                )?,
            },
            default_max_tokens: match raw.default_max_tokens {
                None => d.default_max_tokens,
                v => self.integer(&p("default_max_tokens"), v, 1..=10_000_000)? as u64,
            },
            reconcile_interval: match raw.reconcile_interval {
                None => d.reconcile_interval,
                v => self.duration(&p("reconcile_interval"), v, Zero::Rejected)?,
            },
        })
    }

    pub(super) fn store(&mut self, value: Option<Value>) -> Option<StoreConfig> {
        let d = StoreConfig::default();
        let Some(value) = value else { return Some(d) };
        let raw: RawStore = self.shape("store", value)?;
        let p = |key: &str| join("store", key);
        Some(StoreConfig {
            path: match raw.path {
                None => d.path,
                v => PathBuf::from(self.string(&p("path"), v)?),
            },
            flush_interval: match raw.flush_interval {
                None => d.flush_interval,
                v => self.duration(&p("flush_interval"), v, Zero::Rejected)?,
            },
            queue: match raw.queue {
                None => d.queue,
                v => self.integer(&p("queue"), v, 1024..=100_000_000)?,
            },
        })
    }

    pub(super) fn admin(&mut self, value: Option<Value>) -> Option<AdminConfig> {
        let Some(value) = value else {
            return Some(AdminConfig::default());
        };
        let raw: RawAdmin = self.shape("admin", value)?;
        let master_key = match raw.master_key {
            None => None,
            v => {
                let key = self.secret_or_empty("admin.master_key", v)?;
                if key.is_empty() {
                    // `${TOLLGATE_MASTER_KEY:-}` unset: the admin API stays off.
                    return Some(AdminConfig { master_key: None });
                }
                if key.chars().count() < 16 {
                    self.error("admin.master_key", "must be at least 16 characters long");
                    return None;
                }
                Some(Secret::new(key))
            }
        };
        Some(AdminConfig { master_key })
    }
}
