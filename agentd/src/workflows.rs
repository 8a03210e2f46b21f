//! Workflows as data: named steps, each a role (system prompt, model, tools, budget) that an
//! agent plays, with inputs handed over from earlier steps or gathered by agentd, and the
//! triggers that start a run.
//!
//! Shipped workflows are `/usr/share/aither/workflows/NAME.toml`; the admin's are
//! `/etc/aither/workflows.d/NAME.toml` (a file of the same name replaces the shipped one).
//! Only the admin's files may auto-approve a kind of proposal: nothing is approved without a
//! human by default. Every problem names the file, the line where TOML knows it, and the key;
//! a bad file is refused alone, the others load.
//!
//! ```toml
//! [workflow]
//! description = "Find why a unit failed and propose the fix"
//!
//! [trigger]
//! manual = true
//! units = ["infer-*"]          # a matching unit entering failed or gave-up
//! calendar = "daily 03:30"     # UTC; also "hourly", "weekly mon 03:30", "every 6h"
//!
//! [[step]]
//! name = "diagnose"
//! model = "chat"
//! system_prompt = "You are the appliance's diagnostician."
//! instructions = "Read the journal and say what failed."
//! tools = ["read_file", "list_files"]
//! outputs = ["diagnosis.md"]
//! inputs = [{ collect = "journal", unit = "trigger" }]
//! budget = { steps = 8, tokens = 4000, seconds = 300 }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aither_api::plan::Role;
pub use aither_api::workflow::{ProposalKind, StepBudget, Tool};
use serde::Deserialize;

/// Where the shipped workflows are, under the root.
pub const SHIPPED_DIR: &str = "usr/share/aither/workflows";
/// Where the admin's workflows are, under the root.
pub const ADMIN_DIR: &str = "etc/aither/workflows.d";

/// A step agent's network: the gateway only (the default), none, or outbound too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    None,
    #[default]
    Gateway,
    Outbound,
}

/// When a run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggers {
    /// `aitherctl workflows run NAME`.
    pub manual: bool,
    /// Unit-name patterns (`*` matches any run of characters): a matching unit entering
    /// `failed` or `gave-up` starts a run.
    pub units: Vec<String>,
    pub calendar: Option<Schedule>,
}

/// A calendar schedule, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every so many seconds from the epoch (`every 15m`, `every 6h`, `hourly`).
    Every(u64),
    /// At this minute of each day (`daily 03:30`).
    Daily(u32),
    /// At this minute of the week, Monday 00:00 being 0 (`weekly mon 03:30`).
    Weekly(u32),
}

/// Where a step input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A declared output of an earlier step.
    Output { step: String, file: String },
    /// agentd's status document.
    Status,
    /// The journal of a unit (`None`: the unit whose failure triggered the run).
    Journal { unit: Option<String> },
    /// The files of a directory.
    Directory { path: PathBuf },
}

/// One step: a role an agent plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub model: Role,
    pub system_prompt: String,
    pub instructions: String,
    pub tools: Vec<Tool>,
    /// The commands `run_command` may run: absolute program paths, each with fixed leading
    /// arguments.
    pub commands: Vec<Vec<String>>,
    pub network: Network,
    pub inputs: Vec<Input>,
    pub outputs: Vec<String>,
    pub budget: StepBudget,
}

/// A workflow, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// The file it was read from.
    pub file: PathBuf,
    pub triggers: Triggers,
    pub steps: Vec<Step>,
    /// Kinds of proposal approved without asking (admin files only).
    pub auto_approve: Vec<ProposalKind>,
}

/// A workflow file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct WorkflowError {
    pub file: String,
    /// `line N: …` or `key: …`.
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    workflow: HeaderDoc,
    #[serde(default)]
    trigger: Option<TriggerDoc>,
    step: Vec<StepDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderDoc {
    description: String,
    #[serde(default)]
    auto_approve: Vec<ProposalKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerDoc {
    #[serde(default = "yes")]
    manual: bool,
    #[serde(default)]
    units: Vec<String>,
    calendar: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    name: String,
    model: Role,
    system_prompt: String,
    instructions: String,
    #[serde(default)]
    tools: Vec<Tool>,
    #[serde(default)]
    commands: Vec<Vec<String>>,
    #[serde(default)]
    network: Network,
    #[serde(default)]
    inputs: Vec<InputDoc>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    budget: BudgetDoc,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputDoc {
    from: Option<String>,
    file: Option<String>,
    collect: Option<String>,
    unit: Option<String>,
    path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BudgetDoc {
    steps: Option<u32>,
    tokens: Option<u32>,
    seconds: Option<u32>,
    turn_tokens: Option<u32>,
}

/// Read every workflow under `root`: the shipped ones, then the admin's (replacing a shipped
/// one of the same name). Bad files are returned as errors; the others load.
pub fn load(root: &Path) -> (BTreeMap<String, Workflow>, Vec<WorkflowError>) {
    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    for (dir, admin) in [(SHIPPED_DIR, false), (ADMIN_DIR, true)] {
        for file in crate::config::toml_files(&root.join(dir)) {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| WorkflowError { file: file.display().to_string(), problem: e.to_string() })
                .and_then(|text| parse(&file, &text, admin));
            match parsed {
                Ok(w) => {
                    found.insert(w.name.clone(), w);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    (found, errors)
}

/// Parse and validate one workflow file; `admin`: it is one of the admin's files.
pub fn parse(file: &Path, text: &str, admin: bool) -> Result<Workflow, WorkflowError> {
    let fail = |problem: String| WorkflowError { file: file.display().to_string(), problem };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if !is_name(stem) {
        return Err(fail(format!(
            "the file name {stem:?} is not a workflow name (a lowercase letter, then up to 31 letters, digits or '-')"
        )));
    }
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| format!("line {}: ", line_of(text, s.start))).unwrap_or_default();
        fail(format!("{at}{}", e.message()))
    })?;
    let bad = |key: String, problem: String| fail(format!("{key}: {problem}"));

    if doc.workflow.description.trim().is_empty() {
        return Err(bad("workflow.description".into(), "must not be empty".into()));
    }
    if !admin && !doc.workflow.auto_approve.is_empty() {
        return Err(bad(
            "workflow.auto_approve".into(),
            format!("only the admin's workflows ({}) may approve proposals without a human", ADMIN_DIR),
        ));
    }
    let trigger = doc.trigger.unwrap_or(TriggerDoc { manual: true, units: Vec::new(), calendar: None });
    for (i, pattern) in trigger.units.iter().enumerate() {
        if pattern.is_empty() || !pattern.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@*".contains(&b)) {
            return Err(bad(format!("trigger.units[{i}]"), format!("{pattern:?} is not a unit name pattern")));
        }
    }
    let calendar = match &trigger.calendar {
        Some(c) => Some(Schedule::parse(c).map_err(|p| bad("trigger.calendar".into(), p))?),
        None => None,
    };
    if !trigger.manual && trigger.units.is_empty() && calendar.is_none() {
        return Err(bad(
            "trigger".into(),
            "nothing starts this workflow (manual = false, no units, no calendar)".into(),
        ));
    }

    if doc.step.is_empty() {
        return Err(bad("step".into(), "a workflow needs at least one [[step]]".into()));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(doc.step.len());
    for (i, s) in doc.step.into_iter().enumerate() {
        let key = |k: &str| format!("step[{i}].{k}");
        if !is_name(&s.name) {
            return Err(bad(
                key("name"),
                format!("{:?} is not a step name (a lowercase letter, then up to 31 letters, digits or '-')", s.name),
            ));
        }
        if steps.iter().any(|p| p.name == s.name) {
            return Err(bad(key("name"), format!("{:?} is used by an earlier step", s.name)));
        }
        if s.model == Role::Embedding {
            return Err(bad(key("model"), "a step converses: chat or code, not embedding".into()));
        }
        for (k, v) in [("system_prompt", &s.system_prompt), ("instructions", &s.instructions)] {
            if v.trim().is_empty() {
                return Err(bad(key(k), "must not be empty".into()));
            }
        }
        let mut tools = s.tools.clone();
        tools.sort();
        if tools.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad(key("tools"), "a tool is listed twice".into()));
        }
        if tools.contains(&Tool::FetchUrl) && s.network != Network::Outbound {
            return Err(bad(key("tools"), "fetch_url needs network = \"outbound\"".into()));
        }
        if s.network == Network::None {
            return Err(bad(
                key("network"),
                "a step talks to the model through the gateway: \"gateway\" or \"outbound\"".into(),
            ));
        }
        match (tools.contains(&Tool::RunCommand), s.commands.is_empty()) {
            (true, true) => return Err(bad(key("commands"), "run_command needs the commands it may run".into())),
            (false, false) => {
                return Err(bad(key("commands"), "commands are for the run_command tool, not granted".into()))
            }
            _ => {}
        }
        for (c, command) in s.commands.iter().enumerate() {
            check_command(command).map_err(|p| bad(format!("{}[{c}]", key("commands")), p))?;
        }
        for (o, out) in s.outputs.iter().enumerate() {
            if !is_file_name(out) {
                return Err(bad(format!("{}[{o}]", key("outputs")), format!("{out:?} is not a plain file name")));
            }
        }
        let mut inputs = Vec::with_capacity(s.inputs.len());
        for (n, input) in s.inputs.iter().enumerate() {
            let k = format!("{}[{n}]", key("inputs"));
            inputs.push(input_of(input, &steps, !trigger.units.is_empty()).map_err(|p| bad(k, p))?);
        }
        let budget = StepBudget {
            steps: bounded(s.budget.steps, 10, 200).map_err(|p| bad(key("budget.steps"), p))?,
            tokens: bounded(s.budget.tokens, 8_000, 1_000_000).map_err(|p| bad(key("budget.tokens"), p))?,
            seconds: bounded(s.budget.seconds, 600, 86_400).map_err(|p| bad(key("budget.seconds"), p))?,
            turn_tokens: bounded(s.budget.turn_tokens, aither_api::workflow::TURN_TOKENS, 32_768)
                .map_err(|p| bad(key("budget.turn_tokens"), p))?,
        };
        steps.push(Step {
            name: s.name,
            model: s.model,
            system_prompt: s.system_prompt,
            instructions: s.instructions,
            tools: s.tools,
            commands: s.commands,
            network: s.network,
            inputs,
            outputs: s.outputs,
            budget,
        });
    }
    Ok(Workflow {
        name: stem.to_string(),
        description: doc.workflow.description,
        file: file.to_path_buf(),
        triggers: Triggers { manual: trigger.manual, units: trigger.units, calendar },
        steps,
        auto_approve: doc.workflow.auto_approve,
    })
}

fn input_of(doc: &InputDoc, earlier: &[Step], unit_triggers: bool) -> Result<Input, String> {
    match (&doc.from, &doc.collect) {
        (Some(step), None) => {
            if doc.unit.is_some() || doc.path.is_some() {
                return Err("`from` takes `file` only".into());
            }
            let Some(prev) = earlier.iter().find(|s| &s.name == step) else {
                return Err(format!("{step:?} is not an earlier step"));
            };
            let Some(file) = &doc.file else { return Err(format!("which output of {step:?}: `file` is missing")) };
            if !prev.outputs.contains(file) {
                return Err(format!("{step:?} declares no output {file:?} (it has: {})", prev.outputs.join(", ")));
            }
            Ok(Input::Output { step: step.clone(), file: file.clone() })
        }
        (None, Some(kind)) => {
            if doc.file.is_some() {
                return Err("`file` goes with `from`".into());
            }
            let extra = |what: &str| format!("collect = {kind:?} takes no `{what}`");
            match kind.as_str() {
                "status" => {
                    if doc.unit.is_some() {
                        return Err(extra("unit"));
                    }
                    if doc.path.is_some() {
                        return Err(extra("path"));
                    }
                    Ok(Input::Status)
                }
                "journal" => {
                    if doc.path.is_some() {
                        return Err(extra("path"));
                    }
                    match doc.unit.as_deref() {
                        None => Err("collect = \"journal\" needs `unit` (a unit name, or \"trigger\")".into()),
                        Some("trigger") if !unit_triggers => {
                            Err("unit = \"trigger\" needs a unit trigger (trigger.units)".into())
                        }
                        Some("trigger") => Ok(Input::Journal { unit: None }),
                        Some(u) if u.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)) => {
                            Ok(Input::Journal { unit: Some(u.to_string()) })
                        }
                        Some(u) => Err(format!("{u:?} is not a unit name")),
                    }
                }
                "directory" => {
                    if doc.unit.is_some() {
                        return Err(extra("unit"));
                    }
                    let Some(path) = &doc.path else { return Err("collect = \"directory\" needs `path`".into()) };
                    aither_policy::SafePath::new("path", path).map_err(|e| e.to_string())?;
                    Ok(Input::Directory { path: path.clone() })
                }
                other => Err(format!("collect = {other:?}: one of status, journal, directory")),
            }
        }
        (Some(_), Some(_)) => Err("either `from` (an earlier step) or `collect`, not both".into()),
        (None, None) => Err("`from` (an earlier step's output) or `collect` (status, journal, directory)".into()),
    }
}

/// An absolute program (validated as a safe path) and plain arguments.
fn check_command(command: &[String]) -> Result<(), String> {
    let Some(program) = command.first() else { return Err("an empty command".into()) };
    aither_policy::SafePath::new("program", Path::new(program)).map_err(|e| e.to_string())?;
    for arg in &command[1..] {
        if arg.is_empty() || arg.len() > 256 || arg.chars().any(char::is_control) {
            return Err(format!("argument {arg:?}: empty, over 256 bytes or with control characters"));
        }
    }
    Ok(())
}

fn bounded(v: Option<u32>, default: u32, max: u32) -> Result<u32, String> {
    match v {
        None => Ok(default),
        Some(0) => Err("must be at least 1".into()),
        Some(n) if n > max => Err(format!("{n} is above the limit of {max}")),
        Some(n) => Ok(n),
    }
}

/// A workflow or step name: a lowercase letter, then up to 31 lowercase letters, digits or '-'.
pub fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A file name an output may have: no directory, not hidden, ASCII letters, digits, `._-`.
fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

impl Schedule {
    /// `hourly`, `daily HH:MM`, `weekly DAY HH:MM` (mon … sun), `every N{m,h,d}` (at least 5m).
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let minute_of_day = |hm: &str| -> Result<u32, String> {
            let (h, m) = hm.split_once(':').ok_or_else(|| format!("{hm:?}: expected HH:MM"))?;
            match (h.parse::<u32>(), m.parse::<u32>()) {
                (Ok(h), Ok(m)) if h < 24 && m < 60 && m.to_string().len() <= 2 && h.to_string().len() <= 2 => {
                    Ok(h * 60 + m)
                }
                _ => Err(format!("{hm:?}: expected HH:MM (00:00 to 23:59)")),
            }
        };
        match words.as_slice() {
            ["hourly"] => Ok(Schedule::Every(3600)),
            ["daily", hm] => Ok(Schedule::Daily(minute_of_day(hm)?)),
            ["weekly", day, hm] => {
                let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                let d = days
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(day))
                    .ok_or_else(|| format!("{day:?}: a day is mon, tue, wed, thu, fri, sat or sun"))?;
                Ok(Schedule::Weekly(u32::try_from(d).unwrap_or(0) * 1440 + minute_of_day(hm)?))
            }
            ["every", n] => {
                let (num, unit) = n.split_at(n.find(|c: char| !c.is_ascii_digit()).unwrap_or(n.len()));
                let scale = match unit {
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(format!("{n:?}: expected a number and m, h or d (every 15m)")),
                };
                let secs = num.parse::<u64>().map_err(|_| format!("{n:?}: expected a number and m, h or d"))?;
                match secs.checked_mul(scale) {
                    Some(t) if (300..=366 * 86_400).contains(&t) => Ok(Schedule::Every(t)),
                    _ => Err(format!("{n:?}: from 5m to 366d")),
                }
            }
            _ => Err(format!("{s:?}: hourly, daily HH:MM, weekly DAY HH:MM or every N(m|h|d), in UTC")),
        }
    }

    /// The schedule as it is written (`daily 03:30`).
    pub fn describe(self) -> String {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60 % 24, m % 60);
        match self {
            Schedule::Every(3600) => "hourly".into(),
            Schedule::Every(s) if s % 86_400 == 0 => format!("every {}d", s / 86_400),
            Schedule::Every(s) if s % 3600 == 0 => format!("every {}h", s / 3600),
            Schedule::Every(s) => format!("every {}m", s / 60),
            Schedule::Daily(m) => format!("daily {}", hm(m)),
            Schedule::Weekly(m) => {
                let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                format!("weekly {} {}", days[usize::try_from(m / 1440).unwrap_or(0) % 7], hm(m % 1440))
            }
        }
    }

    /// The first time after `now` (seconds since the epoch, UTC) this schedule fires.
    pub fn next_after(self, now: u64) -> u64 {
        let next_on = |period: u64, offset: u64| {
            let base = now - now % period;
            let t = base + offset;
            if t > now {
                t
            } else {
                t + period
            }
        };
        match self {
            Schedule::Every(p) => next_on(p, 0),
            Schedule::Daily(m) => next_on(86_400, u64::from(m) * 60),
            // The epoch was a Thursday: weeks counted from Monday start 3 days before it.
            Schedule::Weekly(m) => {
                let shifted = now + 3 * 86_400;
                let period = 7 * 86_400;
                let base = shifted - shifted % period;
                let t = base + u64::from(m) * 60;
                (if t > shifted { t } else { t + period }) - 3 * 86_400
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[workflow]
description = "Find why a unit failed and propose the fix"

[trigger]
units = ["infer-*"]
calendar = "weekly mon 03:30"

[[step]]
name = "diagnose"
model = "chat"
system_prompt = "You are the appliance's diagnostician."
instructions = "Read the journal and say what failed."
tools = ["read_file", "list_files", "run_command"]
commands = [["/usr/bin/systemctl", "status"]]
outputs = ["diagnosis.md"]
inputs = [{ collect = "journal", unit = "trigger" }, { collect = "status" }]
budget = { steps = 8, tokens = 4000 }

[[step]]
name = "fix"
model = "code"
system_prompt = "You propose the smallest fix."
instructions = "Propose one action."
tools = ["propose"]
inputs = [{ from = "diagnose", file = "diagnosis.md" }]
"#;

    fn parse_str(text: &str) -> Result<Workflow, WorkflowError> {
        parse(Path::new("/usr/share/aither/workflows/heal.toml"), text, false)
    }

    #[test]
    fn a_good_workflow_reads_with_its_defaults() {
        let w = parse_str(GOOD).expect("valid");
        assert_eq!(w.name, "heal");
        assert!(w.triggers.manual, "manual by default");
        assert_eq!(w.triggers.calendar, Some(Schedule::Weekly(210)));
        assert_eq!(w.steps[0].budget, StepBudget { steps: 8, tokens: 4000, seconds: 600, turn_tokens: 2048 });
        assert_eq!(w.steps[0].inputs, vec![Input::Journal { unit: None }, Input::Status]);
        assert_eq!(w.steps[1].inputs, vec![Input::Output { step: "diagnose".into(), file: "diagnosis.md".into() }]);
        assert_eq!(w.steps[1].network, Network::Gateway);
        assert!(w.auto_approve.is_empty());
    }

    fn problem(text: &str) -> String {
        parse_str(text).expect_err("refused").to_string()
    }

    #[test]
    fn each_mistake_is_named_with_its_file_and_key_or_line() {
        let cases = [
            (GOOD.replace("budget = {", "colour = \"red\"\nbudget = {"), "line 18: unknown field `colour`"),
            (GOOD.replace("\"propose\"]", "\"propose\", \"format_disk\"]"), "unknown variant `format_disk`"),
            (
                GOOD.replace("name = \"fix\"", "name = \"diagnose\""),
                "step[1].name: \"diagnose\" is used by an earlier step",
            ),
            (
                GOOD.replace("file = \"diagnosis.md\"", "file = \"notes.md\""),
                "step[1].inputs[0]: \"diagnose\" declares no output \"notes.md\"",
            ),
            (
                GOOD.replace("from = \"diagnose\"", "from = \"later\""),
                "step[1].inputs[0]: \"later\" is not an earlier step",
            ),
            (
                GOOD.replace("\"diagnosis.md\"]", "\"../etc/passwd\"]"),
                "step[0].outputs[0]: \"../etc/passwd\" is not a plain file name",
            ),
            (GOOD.replace("/usr/bin/systemctl", "systemctl"), "step[0].commands[0]:"),
            (GOOD.replace("units = [\"infer-*\"]", ""), "unit = \"trigger\" needs a unit trigger"),
            (GOOD.replace("weekly mon 03:30", "weekly funday 03:30"), "trigger.calendar: \"funday\""),
            (GOOD.replace("tokens = 4000", "tokens = 0"), "step[0].budget.tokens: must be at least 1"),
            (GOOD.replace("\"propose\"]", "\"fetch_url\"]"), "step[1].tools: fetch_url needs network = \"outbound\""),
            (GOOD.replace(", \"run_command\"", ""), "step[0].commands: commands are for the run_command tool"),
            (GOOD.replace("model = \"code\"", "model = \"embedding\""), "step[1].model"),
            (
                GOOD.replace("[workflow]\n", "[workflow]\nauto_approve = [\"restart\"]\n"),
                "workflow.auto_approve: only the admin's",
            ),
            (GOOD.replace("{ collect = \"status\" }", "{ collect = \"status\", path = \"/etc\" }"), "takes no `path`"),
            (
                GOOD.replace("{ collect = \"status\" }", "{ collect = \"directory\", path = \"/var/log/(x)\" }"),
                "step[0].inputs[1]:",
            ),
        ];
        for (text, expected) in cases {
            let p = problem(&text);
            assert!(p.starts_with("/usr/share/aither/workflows/heal.toml: "), "{p}");
            assert!(p.contains(expected), "expected {expected:?} in {p:?}");
        }
    }

    #[test]
    fn the_admin_may_auto_approve_and_replaces_a_shipped_workflow() {
        let root = tempfile::tempdir().expect("tempdir");
        let shipped = root.path().join(SHIPPED_DIR);
        let admin = root.path().join(ADMIN_DIR);
        std::fs::create_dir_all(&shipped).expect("dir");
        std::fs::create_dir_all(&admin).expect("dir");
        std::fs::write(shipped.join("heal.toml"), GOOD).expect("write");
        std::fs::write(shipped.join("Bad Name.toml"), GOOD).expect("write");
        std::fs::write(shipped.join("broken.toml"), "[workflow\n").expect("write");
        let mine = GOOD.replace("[workflow]\n", "[workflow]\nauto_approve = [\"restart\"]\n");
        std::fs::write(admin.join("heal.toml"), mine).expect("write");
        let (found, errors) = load(root.path());
        assert_eq!(found.keys().collect::<Vec<_>>(), ["heal"]);
        assert_eq!(found["heal"].auto_approve, vec![ProposalKind::Restart]);
        assert!(found["heal"].file.starts_with(&admin));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.file.ends_with("broken.toml") && e.problem.starts_with("line 1:")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.problem.contains("is not a workflow name")), "{errors:?}");
    }

    #[test]
    fn the_documented_examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/workflows");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("docs/examples/workflows") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            parse(&path, &text, false).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert!(n >= 1, "no example in {}", dir.display());
    }

    #[test]
    fn schedules_parse_and_fire_at_their_next_time() {
        assert_eq!(Schedule::parse("hourly"), Ok(Schedule::Every(3600)));
        assert_eq!(Schedule::parse("every 15m"), Ok(Schedule::Every(900)));
        assert_eq!(Schedule::parse("daily 03:30"), Ok(Schedule::Daily(210)));
        for bad in ["every 1m", "daily 24:00", "daily 3", "weekly mon", "sometimes", "every 5x", "daily 03:300"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        // 2026-12-02 (a Wednesday) 10:00:00 UTC.
        let now = 1_796_205_600;
        assert_eq!(Schedule::Daily(210).next_after(now), now - 10 * 3600 + 86_400 + 210 * 60);
        assert_eq!(Schedule::Daily(11 * 60).next_after(now), now + 3600);
        assert_eq!(Schedule::Every(3600).next_after(now), now + 3600);
        // Next Monday 03:30 is 2026-12-07 03:30: 4 days 17.5 hours later.
        assert_eq!(Schedule::Weekly(210).next_after(now), now + 4 * 86_400 + 17 * 3600 + 1800);
        // Wednesday 10:30 is later today.
        assert_eq!(Schedule::Weekly(2 * 1440 + 630).next_after(now), now + 1800);
    }
}
