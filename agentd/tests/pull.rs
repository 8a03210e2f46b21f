//! `PullModel` over D-Bus (the Cockpit page's Pull): agentd downloads a catalog model from a
//! local server in the background, reports its bytes as `PullChanged` signals, and ends with
//! `done`; a name outside the catalog is refused at once.

mod common;

use std::path::Path;

use common::Bed;

#[test]
fn a_model_is_pulled_in_the_background_with_its_progress_signalled() {
    let bed = Bed::new();
    let model = std::fs::read(aither_test_support::test_model("all-MiniLM-L6-v2.gguf")).expect("test model");
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", model.len()).into_bytes();
    response.extend_from_slice(&model);
    let (port, server) = aither_test_support::http::serve(vec![response]);
    // The installed data, with the catalog pointing this model at the local server.
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plan");
    for dir in ["presets", "catalog"] {
        for entry in std::fs::read_dir(plan.join(dir)).expect("data") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read").replace(
                "https://huggingface.co/second-state/All-MiniLM-L6-v2-Embedding-GGUF/resolve/main/",
                &format!("http://127.0.0.1:{port}/"),
            );
            bed.write(&format!("usr/share/aither/{dir}/{}", path.file_name().expect("name").to_string_lossy()), &text);
        }
    }
    let _agentd = bed.agentd();
    bed.wait_up(20);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let seen = runtime.block_on(async {
        use futures_util::StreamExt as _;
        let conn = zbus::connection::Builder::address(bed.bus_address())
            .expect("address")
            .build()
            .await
            .expect("the private bus");
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.aitheros.Agentd1")
            .expect("interface")
            .member("PullChanged")
            .expect("member")
            .build();
        let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, Some(64)).await.expect("subscribe");
        let proxy = zbus::Proxy::new(&conn, "org.aitheros.Agentd1", "/org/aitheros/Agentd1", "org.aitheros.Agentd1")
            .await
            .expect("proxy");
        let refused: Result<String, zbus::Error> = proxy.call("PullModel", &("no-such-model",)).await;
        let why = refused.expect_err("not in the catalog").to_string();
        assert!(why.contains("\"no-such-model\" is not a model of the catalog"), "{why}");

        let started: String = proxy.call("PullModel", &("all-minilm-l6-v2",)).await.expect("PullModel");
        assert!(started.contains("pulling all-minilm-l6-v2"), "{started}");
        let mut seen = Vec::new();
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(60));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => panic!("no end of the pull in 60 s: {seen:?}"),
                message = signals.next() => {
                    let message = message.expect("a signal").expect("a message");
                    let (name, done, total, state, text): (String, u64, u64, String, String) =
                        message.body().deserialize().expect("PullChanged(s t t s s)");
                    assert_eq!(name, "all-minilm-l6-v2");
                    let end = state != "pulling";
                    seen.push((done, total, state, text));
                    if end {
                        break;
                    }
                }
            }
        }
        seen
    });
    let (_, _, state, text) = seen.last().expect("signals").clone();
    assert_eq!(state, "done", "{seen:?}\n{}", bed.log());
    assert!(text.contains("all-MiniLM-L6-v2-ggml-model-f16.gguf"), "{text}");
    let bytes = u64::try_from(model.len()).expect("size");
    assert!(
        seen.iter().any(|(done, total, state, _)| state == "pulling" && *total == bytes && *done > 0),
        "the progress was signalled with the file's size: {seen:?}"
    );
    let file = bed.root().join("var/lib/aither/models/all-MiniLM-L6-v2-ggml-model-f16.gguf");
    assert_eq!(std::fs::metadata(&file).expect("downloaded").len(), bytes);
    assert_eq!(server.join().expect("server")[0].request_line, "GET /all-MiniLM-L6-v2-ggml-model-f16.gguf HTTP/1.1");
}
