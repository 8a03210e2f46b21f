//! Tables and texts for people, from agentd's typed documents.

use aither_api::agentd as api;

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| (*h).to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    out
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `aitherctl status`.
pub fn status(s: &api::Status) -> String {
    format!(
        "{}\npreset:   {} ({})\nlimits:   {}\nisolation: {}\n\n{}",
        s.summary,
        s.preset,
        s.reason,
        s.cgroups,
        s.selinux.describe(),
        units(&s.units)
    )
}

/// `aitherctl units`.
pub fn units(units: &[api::Unit]) -> String {
    let rows = units
        .iter()
        .map(|u| {
            vec![
                u.name.clone(),
                u.kind.name().to_string(),
                format!("{} ({})", u.group, u.priority),
                u.state.name().to_string(),
                or_dash(u.pid),
                u.restarts.to_string(),
                u.detail.clone().or_else(|| u.status.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["NAME", "KIND", "GROUP", "STATE", "PID", "RESTARTS", "DETAIL"], rows)
}

/// `aitherctl agents`.
pub fn agents(units: &[api::Unit]) -> String {
    let rows = units
        .iter()
        .map(|u| {
            let a = u.agent.as_ref();
            vec![
                u.name.clone(),
                u.state.name().to_string(),
                or_dash(u.pid),
                or_dash(a.map(|a| &a.level)),
                or_dash(a.map(|a| &a.domain)),
                or_dash(a.map(|a| &a.network)),
                or_dash(a.map(|a| a.workspace.display())),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "PID", "LEVEL", "DOMAIN", "NETWORK", "WORKSPACE"], rows)
}

/// `aitherctl preset`.
pub fn preset(p: &api::PresetReply) -> String {
    let pinned = if p.pinned { " (pinned)" } else { "" };
    let description = p.preset.as_ref().map(|d| d.description.as_str()).unwrap_or_default();
    format!("{}{pinned}: {}\n{description}\navailable: {}\n", p.name, p.reason, p.available.join(", "))
}

/// `aitherctl models list`.
pub fn models(doc: &api::Models) -> String {
    let rows = doc
        .models
        .iter()
        .map(|m| {
            #[allow(clippy::cast_precision_loss)] // a size to two decimals
            let size = m.bytes.map_or("-".into(), |b| format!("{:.2} GiB", b as f64 / f64::from(1u32 << 30)));
            vec![
                m.name.clone(),
                m.role.name().to_string(),
                m.quant.clone(),
                if m.present { size } else { "missing".into() },
                or_dash(m.verification.map(api::Verification::name)),
                or_dash(m.state.map(api::UnitState::name)),
                if m.pinned { "pinned".into() } else { "on demand".into() },
            ]
        })
        .collect();
    let mut out = format!("model directory: {}\n", doc.model_dir.display());
    out.push_str(&table(&["NAME", "ROLE", "QUANT", "FILE", "CHECKED", "WORKER", "LOADED"], rows));
    out
}

/// `aitherctl inference`: each worker's last minute (mean rates) and its latest gauges.
pub fn inference(doc: &api::Inference) -> String {
    let mut out = format!(
        "sampled every {} s from each running worker, kept {} min\n",
        doc.interval_seconds,
        doc.window_seconds / 60
    );
    if doc.workers.is_empty() {
        out.push_str("no worker ran in that time\n");
        return out;
    }
    let rows = doc
        .workers
        .iter()
        .filter_map(|w| {
            let last = w.samples.last()?;
            let minute: Vec<&api::InferenceSample> = w.samples.iter().filter(|s| s.time + 60 >= last.time).collect();
            let mean = |rate: fn(&api::InferenceSample) -> Option<f64>| {
                let v: Vec<f64> = minute.iter().filter_map(|s| rate(s)).collect();
                #[allow(clippy::cast_precision_loss)] // a handful of samples
                let m = (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
                m.map_or("-".into(), |m| format!("{m:.1}"))
            };
            #[allow(clippy::cast_precision_loss)] // a share to a whole percent
            let kv = if last.kv_cells_total == 0 {
                "-".to_string()
            } else {
                format!(
                    "{}/{} ({:.0} %)",
                    last.kv_cells_used,
                    last.kv_cells_total,
                    last.kv_cells_used as f64 * 100.0 / last.kv_cells_total as f64
                )
            };
            Some(vec![
                w.model.clone(),
                mean(|s| s.generated_per_second),
                mean(|s| s.prompt_per_second),
                last.queue.to_string(),
                format!("{}/{}", last.slots_busy, last.slots_total),
                kv,
            ])
        })
        .collect();
    out.push_str(&table(&["MODEL", "TOKENS/S", "PROMPT/S", "QUEUE", "SLOTS", "KV CELLS"], rows));
    out.push_str("(tokens per second: the mean over the last minute; queue, slots and KV: the latest sample)\n");
    out
}

/// `aitherctl gateway`: the listeners, the key and the commands that use them.
pub fn gateway(g: &api::Gateway) -> String {
    let key = g.api_key_file.as_ref().map(|k| k.display().to_string());
    let mut out = String::new();
    let mut url = None;
    for l in &g.listen {
        match l {
            api::Listener::Tcp { address, key_required } => {
                let needs = if *key_required { "clients send the key" } else { "no key (allow_tcp_without_key)" };
                out.push_str(&format!("listening: http://{address}/v1 ({needs})\n"));
                url.get_or_insert(format!("http://{address}/v1"));
            }
            api::Listener::Unix { path, group } => {
                let who = group.as_ref().map_or("the owner only".to_string(), |g| format!("group {g}, mode 0660"));
                out.push_str(&format!(
                    "listening: unix:{} ({who}; agents with network = \"gateway\")\n",
                    path.display()
                ));
            }
        }
    }
    if let Some(k) = &key {
        out.push_str(&format!("key:       {k} (readable by root and aither-admin)\n"));
    }
    if let (Some(url), Some(k)) = (url, key) {
        out.push_str(&format!(
            "use:       curl -H \"Authorization: Bearer $(cat {k})\" {url}/models\n           \
             OPENAI_BASE_URL={url} OPENAI_API_KEY=$(cat {k}) your-openai-client\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn inference_shows_the_last_minutes_mean_and_the_latest_gauges() {
        let sample = |time, generated: Option<f64>, queue| api::InferenceSample {
            time,
            generated_per_second: generated,
            prompt_per_second: generated.map(|g| g * 4.0),
            queue,
            slots_busy: 1,
            slots_total: 4,
            kv_cells_used: 1024,
            kv_cells_total: 4096,
        };
        let doc = api::Inference {
            schema_version: 1,
            now: 112,
            interval_seconds: 5,
            window_seconds: 600,
            workers: vec![api::WorkerSamples {
                model: "qwen".into(),
                unit: "infer-qwen".into(),
                // The first sample is older than a minute: left out of the mean.
                samples: vec![
                    sample(0, Some(100.0), 0),
                    sample(100, None, 0),
                    sample(105, Some(10.0), 0),
                    sample(110, Some(20.0), 3),
                ],
            }],
        };
        let text = inference(&doc);
        let row = text.lines().find(|l| l.starts_with("qwen")).expect("a row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..5], ["qwen", "15.0", "60.0", "3", "1/4"], "{text}");
        assert!(row.ends_with("1024/4096 (25 %)"), "{row}");
        let empty = inference(&api::Inference { workers: vec![], ..doc });
        assert!(empty.contains("no worker ran"), "{empty}");
    }

    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let t = table(&["A", "B"], vec![vec!["long cell".into(), "x".into()], vec!["s".into(), "y".into()]]);
        assert_eq!(t, "A          B\nlong cell  x\ns          y\n");
    }

    #[test]
    fn the_gateway_text_gives_ready_commands_with_the_key() {
        let g = api::Gateway {
            listen: vec![
                api::Listener::Tcp { address: "127.0.0.1:8080".into(), key_required: true },
                api::Listener::Unix { path: "/run/aither/gateway.sock".into(), group: Some("aither-agent".into()) },
            ],
            api_key_file: Some("/etc/aither/gateway.key".into()),
            allowed_hosts: vec![],
            limits: api::ListenerLimits {
                header_timeout_seconds: 10,
                body_timeout_seconds: 30,
                idle_timeout_seconds: 10,
                max_connections: 512,
                max_body_bytes: 1,
            },
        };
        let text = gateway(&g);
        assert!(text.contains("http://127.0.0.1:8080/v1 (clients send the key)"), "{text}");
        assert!(text.contains("group aither-agent, mode 0660"), "{text}");
        assert!(text.contains("Bearer $(cat /etc/aither/gateway.key)"), "{text}");
    }
}
