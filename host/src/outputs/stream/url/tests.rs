use super::*;

fn rules() -> StreamUrlRules {
    StreamUrlRules::default()
}

fn rtmp(raw: &str) -> Result<StreamUrl, StreamUrlError> {
    parse_stream_url(raw, StreamKind::Rtmp, &rules())
}

/// Go's `TestValidateUrl` (urls_test.go), with Twitch resolved offline.
#[test]
fn go_validate_url_table() {
    let cases = [
        (
            "mux://streamkey",
            "rtmps://global-live.mux.com:443/app/streamkey",
            "rtmps://global-live.mux.com:443/app/{str...key}",
        ),
        (
            "rtmp://localhost:1935/live/streamkey",
            "rtmp://localhost:1935/live/streamkey",
            "rtmp://localhost:1935/live/{str...key}",
        ),
        (
            "rtmps://localhost:1935/live/streamkey",
            "rtmps://localhost:1935/live/streamkey",
            "rtmps://localhost:1935/live/{str...key}",
        ),
        (
            "twitch://streamkey",
            "rtmps://live.twitch.tv:443/app/streamkey",
            "rtmps://live.twitch.tv:443/app/{str...key}",
        ),
        (
            "rtmp://fake.contribute.live-video.net/app/streamkey",
            "rtmps://live.twitch.tv:443/app/streamkey",
            "rtmps://live.twitch.tv:443/app/{str...key}",
        ),
    ];
    for (raw, url, redacted) in cases {
        let s = rtmp(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(s.url, url, "{raw}");
        assert_eq!(s.redacted, redacted, "{raw}");
        assert_eq!(s.stream_key.as_deref(), Some("streamkey"));
        assert_eq!(s.kind, StreamKind::Rtmp);
        assert_eq!(s.raw, raw);
    }
}

#[test]
fn twitch_template_is_configurable() {
    let rules = StreamUrlRules {
        twitch_ingest_template: "rtmp://127.0.0.1:1935/app/{stream_key}".into(),
    };
    let s = parse_stream_url("twitch://abcdefghij", StreamKind::Rtmp, &rules).unwrap();
    assert_eq!(s.url, "rtmp://127.0.0.1:1935/app/abcdefghij");
    assert_eq!(s.redacted, "rtmp://127.0.0.1:1935/app/{abc...hij}");
}

/// Go's `TestGetUrl`: shorthands find the stream they resolved to.
#[test]
fn go_get_url_table() {
    let streams: Vec<StreamUrl> = [
        "rtmps://global-live.mux.com:443/app/streamkey",
        "rtmps://live.twitch.tv:443/app/streamkey",
        "rtmp://localhost:1935/live/streamkey",
    ]
    .iter()
    .map(|u| rtmp(u).unwrap())
    .collect();
    for (candidate, index) in [
        ("mux://streamkey", 0),
        ("twitch://streamkey", 1),
        ("rtmp://any.contribute.live-video.net/app/streamkey", 1),
        ("rtmp://localhost:1935/live/streamkey", 2),
    ] {
        assert_eq!(
            find_stream(&streams, candidate, &rules()),
            Ok(index),
            "{candidate}"
        );
    }
}

#[test]
fn removal_by_redacted_form_only_when_unique() {
    let a = rtmp("rtmp://localhost:1935/live/streamkey1").unwrap();
    let b = rtmp("rtmp://localhost:1935/live/streamkey2").unwrap();
    let c = rtmp("rtmp://localhost:1935/other/abcdefghi").unwrap();
    let streams = vec![a.clone(), b, c.clone()];
    assert!(a.matches("rtmp://localhost:1935/live/streamkey1"));
    assert_eq!(
        a.match_kind("rtmp://localhost:1935/live/{str...ey1}"),
        Some(UrlMatch::Redacted)
    );
    assert_eq!(find_stream(&streams, &c.redacted, &rules()), Ok(2));
    assert_eq!(
        find_stream(&streams, "rtmp://localhost:1935/live/streamkey2", &rules()),
        Ok(1)
    );
    // streamkey1 → {str...ey1}, streamkey2 → {str...ey2}: distinct, so both unique.
    assert_eq!(
        find_stream(&streams, "rtmp://localhost:1935/live/{str...ey2}", &rules()),
        Ok(1)
    );
    let twins = vec![
        rtmp("rtmp://h/live/abc123xyz").unwrap(),
        rtmp("rtmp://h/live/abc999xyz").unwrap(),
    ];
    assert_eq!(twins[0].redacted, twins[1].redacted);
    assert_eq!(
        find_stream(&twins, "rtmp://h/live/{abc...xyz}", &rules())
            .unwrap_err()
            .to_string(),
        "stream rtmp://h/live/{abc...xyz} matches more than one output; remove it by its full url"
    );
    assert_eq!(
        find_stream(&twins, "rtmp://h/live/abc999xyz", &rules()),
        Ok(1),
        "the raw url still works"
    );
}

#[test]
fn not_found_names_the_candidate_redacted() {
    let streams = vec![rtmp("rtmp://localhost/live/streamkey").unwrap()];
    let err = find_stream(&streams, "rtmp://localhost/live/otherkey99", &rules()).unwrap_err();
    assert_eq!(
        err,
        FindError::NotFound("rtmp://localhost/live/{oth...y99}".into())
    );
    assert_eq!(
        err.to_string(),
        "stream rtmp://localhost/live/{oth...y99} not found"
    );
}

#[test]
fn rtmp_format_errors_are_gos_text_with_the_url_redacted() {
    let err = rtmp("rtmp://localhost/streamkey").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid url rtmp://localhost/{str...key}: rtmp urls must be of format rtmp(s)://{host}(/{path})/{app}/{stream_key}( live=1)"
    );
    assert!(rtmp("rtmp://localhost").is_err());
    assert!(
        rtmp("RTMP://localhost/live/key").is_err(),
        "Go's regex is case-sensitive (scheme check is not)"
    );
    assert!(
        rtmp("RTMP://localhost/live/key")
            .unwrap_err()
            .to_string()
            .contains(RTMP_FORMAT)
    );
}

#[test]
fn live_flag_and_paths() {
    let s = rtmp("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop live=1").unwrap();
    assert_eq!(
        s.redacted,
        "rtmp://a.rtmp.youtube.com/live2/{abc...nop} live=1"
    );
    assert_eq!(s.stream_key.as_deref(), Some("abcd-efgh-ijkl-mnop"));
    let s = rtmp("rtmp://host/a/b/app/key12").unwrap();
    assert_eq!(s.redacted, "rtmp://host/a/b/app/{k...2}");
    let s = rtmp("rtmp://host/app/").unwrap();
    assert_eq!(s.stream_key.as_deref(), Some(""), "Go accepts an empty key");
    assert_eq!(s.redacted, "rtmp://host/app/{...}");
}

#[test]
fn scheme_mismatch_is_invalid_scheme() {
    for (raw, kind) in [
        ("srt://host:1234", StreamKind::Rtmp),
        ("rtmp://host/app/key", StreamKind::Srt),
        ("wss://host/x", StreamKind::Rtmp),
        ("http://host/app/key", StreamKind::Rtmp),
        ("rtmp://host/app/key", StreamKind::Websocket),
    ] {
        let err = parse_stream_url(raw, kind, &rules()).unwrap_err();
        assert!(
            err.to_string().ends_with(": invalid scheme"),
            "{raw}: {err}"
        );
    }
}

#[test]
fn go_url_parse_failures() {
    assert_eq!(
        rtmp("rtmp://ho st/app/key").unwrap_err().to_string(),
        "invalid url rtmp://ho st/app/{key}: invalid character \" \" in host name"
            .replace("{key}", "{k...y}")
    );
    assert_eq!(
        rtmp("rtmp://host:abc/app/streamkey")
            .unwrap_err()
            .to_string(),
        "invalid url rtmp://host:abc/app/{str...key}: invalid port \":abc\" after host"
    );
    assert_eq!(
        rtmp(":nothing").unwrap_err().to_string(),
        "invalid url :nothing: missing protocol scheme"
    );
    assert!(
        rtmp("rtmp://host/app/key\n")
            .unwrap_err()
            .to_string()
            .contains("invalid control character")
    );
    assert!(rtmp("").is_err());
}

#[test]
fn stream_kind_follows_go() {
    let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let default = StreamProtocol::DefaultProtocol as i32;
    assert_eq!(
        stream_kind(default, &urls(&["rtmps://x/a/k"]), RequestApi::V1),
        Ok(StreamKind::Rtmp)
    );
    assert_eq!(
        stream_kind(default, &urls(&["mux://k"]), RequestApi::V1),
        Ok(StreamKind::Rtmp)
    );
    assert_eq!(
        stream_kind(default, &urls(&["srt://x:1"]), RequestApi::V2),
        Ok(StreamKind::Srt)
    );
    assert_eq!(
        stream_kind(default, &urls(&["wss://x/"]), RequestApi::V2),
        Ok(StreamKind::Websocket)
    );
    assert_eq!(
        stream_kind(default, &[], RequestApi::V1)
            .unwrap_err()
            .to_string(),
        "request has missing or invalid field: stream protocol"
    );
    assert_eq!(
        stream_kind(default, &urls(&["http://x/a/secretkey123"]), RequestApi::V1)
            .unwrap_err()
            .to_string(),
        "invalid url http://x/a/secretkey123: invalid protocol"
    );
    assert_eq!(
        stream_kind(StreamProtocol::Rtmp as i32, &[], RequestApi::V1),
        Ok(StreamKind::Rtmp)
    );
    assert_eq!(
        stream_kind(StreamProtocol::Srt as i32, &[], RequestApi::V1),
        Ok(StreamKind::Srt)
    );
    assert_eq!(
        stream_kind(StreamProtocol::Websocket as i32, &[], RequestApi::V2),
        Ok(StreamKind::Websocket)
    );
    assert!(stream_kind(StreamProtocol::Websocket as i32, &[], RequestApi::V1).is_err());
    assert!(stream_kind(42, &[], RequestApi::V2).is_err());
}

#[test]
fn redact_identifier_matches_protocol() {
    for (key, redacted) in [
        ("", "{...}"),
        ("a", "{...}"),
        ("ab", "{...}"),
        ("abc", "{a...c}"),
        ("abcde", "{a...e}"),
        ("abcdef", "{ab...ef}"),
        ("abcdefgh", "{ab...gh}"),
        ("abcdefghi", "{abc...ghi}"),
        ("streamkey", "{str...key}"),
        ("ключ-потока", "{клю...ока}"),
        ("🎥🎥🎥", "{🎥...🎥}"),
    ] {
        assert_eq!(redact_identifier(key), redacted, "{key}");
    }
}

#[test]
fn srt_urls_parse_and_redact() {
    let raw = "srt://media.example.com:8890?streamid=publish:live/secretkey&passphrase=0123456789abc&pbkeylen=32&latency=200&mode=caller";
    let s = parse_stream_url(raw, StreamKind::Srt, &rules()).unwrap();
    assert_eq!(s.url, raw, "the sink gets the URL as given");
    assert_eq!(
        s.redacted,
        "srt://media.example.com:8890?streamid={...}&passphrase={...}&pbkeylen={...}&latency={...}&mode={...}"
    );
    let p = s.srt.clone().unwrap();
    assert_eq!(
        (p.host.as_str(), p.port, p.pbkeylen, p.latency_ms),
        ("media.example.com", 8890, 32, Some(200))
    );
    assert_eq!(p.passphrase.as_deref(), Some("0123456789abc"));
    assert_eq!(p.streamid.as_deref(), Some("publish:live/secretkey"));
    for text in [format!("{s:?}"), format!("{p:?}"), s.to_string()] {
        assert!(
            !text.contains("secretkey") && !text.contains("0123456789"),
            "{text}"
        );
    }
    let v6 = parse_stream_url("srt://[::1]:9000", StreamKind::Srt, &rules())
        .unwrap()
        .srt
        .unwrap();
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
    let enc = parse_stream_url(
        "srt://h:1?streamid=%23!%3A%3Ar%3Dlive",
        StreamKind::Srt,
        &rules(),
    )
    .unwrap();
    assert_eq!(enc.srt.unwrap().streamid.as_deref(), Some("#!::r=live"));
}

#[test]
fn srt_errors_are_clear() {
    let err = |raw: &str| {
        parse_stream_url(raw, StreamKind::Srt, &rules())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("srt://h:1?mode=listener&passphrase=0123456789"),
        "invalid url srt://h:1?mode={...}&passphrase={...}: srt mode listener is not supported: the egress connects as caller"
    );
    assert!(err("srt://h:1?mode=rendezvous").contains("rendezvous is not supported"));
    assert!(err("srt://h").ends_with("srt urls must include a port"));
    assert!(err("srt://:1234").ends_with("srt urls must name a host (caller mode)"));
    assert!(err("srt://h:0").ends_with("invalid port 0"));
    assert!(err("srt://h:99999").ends_with("invalid port 99999"));
    assert_eq!(
        err("srt://h:1?passphrase=short"),
        "invalid url srt://h:1?passphrase={...}: srt passphrase must be 10 to 79 characters"
    );
    assert!(err("srt://h:1?pbkeylen=20").ends_with("srt pbkeylen must be 0, 16, 24 or 32"));
    assert!(err("srt://h:1?latency=abc").ends_with("srt latency must be a number of milliseconds"));
    assert!(
        err(&format!("srt://h:1?streamid={}", "x".repeat(513))).ends_with("at most 512 characters")
    );
}

#[test]
fn websocket_urls_redact_query_and_password() {
    let s = parse_stream_url(
        "wss://user:hunter2@ws.example.com/audio?token=abc&room=r1&flag",
        StreamKind::Websocket,
        &rules(),
    )
    .unwrap();
    assert_eq!(
        s.redacted,
        "wss://user:{...}@ws.example.com/audio?token={...}&room={...}&flag"
    );
    assert_eq!(
        s.url,
        "wss://user:hunter2@ws.example.com/audio?token=abc&room=r1&flag"
    );
    assert!(parse_stream_url("ws:///nohost", StreamKind::Websocket, &rules()).is_err());
}

#[test]
fn redact_stream_url_covers_every_form() {
    for (url, redacted) in [
        ("mux://abcdefghijkl", "mux://{abc...jkl}"),
        ("twitch://live_123_abc", "twitch://{liv...abc}"),
        ("rtmp://h/app/streamkey", "rtmp://h/app/{str...key}"),
        (
            "rtmps://u:pw@h/app/streamkey",
            "rtmps://u:{...}@h/app/{str...key}",
        ),
        (
            "rtmps://live-api-s.facebook.com:443/rtmp/123456789?s_bl=1&a=AbCdEfGh",
            "rtmps://live-api-s.facebook.com:443/rtmp/{123...789}?s_bl={...}&a={...}",
        ),
        ("rtmp://host/streamkey", "rtmp://host/{str...key}"),
        ("srt://h:1?passphrase=secret", "srt://h:1?passphrase={...}"),
        ("ws://h/x?k=v", "ws://h/x?k={...}"),
        ("ws://h/x", "ws://h/x"),
        ("not a url", "not a url"),
    ] {
        assert_eq!(redact_stream_url(url), redacted, "{url}");
    }
}

#[test]
fn display_and_debug_never_show_the_key() {
    let s = rtmp("rtmp://localhost:1935/live/supersecretkey").unwrap();
    for text in [format!("{s}"), format!("{s:?}")] {
        assert!(!text.contains("supersecretkey"), "{text}");
        assert!(text.contains("{sup...key}"), "{text}");
    }
}

#[test]
fn hostile_input_never_panics() {
    let long = "a".repeat(100_000);
    let inputs = [
        "".to_string(),
        "rtmp://".into(),
        "rtmp:///".into(),
        "rtmp://h/a/b/🎥🎥".into(),
        "mux://".into(),
        "twitch://".into(),
        "srt://[::1".into(),
        "srt://h:1?=&&=x&%zz=%".into(),
        "ws://@".into(),
        format!("rtmp://h/app/{long}"),
        "rtmp://h/app/é?x=é".into(),
    ];
    for raw in &inputs {
        for kind in [StreamKind::Rtmp, StreamKind::Srt, StreamKind::Websocket] {
            let _ = parse_stream_url(raw, kind, &rules());
        }
        let _ = redact_stream_url(raw);
        let _ = find_stream(&[], raw, &rules());
    }
    let s = rtmp(&format!("rtmp://h/app/{long}")).unwrap();
    assert_eq!(s.redacted, "rtmp://h/app/{aaa...aaa}");
}

#[test]
fn redaction_is_idempotent() {
    for url in [
        "rtmp://h/app/streamkey",
        "mux://abcdefghijkl",
        "rtmp://host/streamkey",
        "srt://h:1?passphrase=secret",
        "rtmps://u:pw@h/app/k?x=1",
        "rtmp://h/app/ab",
    ] {
        let once = redact_stream_url(url);
        assert_eq!(redact_stream_url(&once), once, "{url}");
    }
}
