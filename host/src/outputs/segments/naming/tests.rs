use super::*;

fn now() -> LocalTime {
    LocalTime {
        year: 2024,
        month: 3,
        day: 5,
        hour: 7,
        minute: 8,
        second: 9,
        millis: 42,
    }
}

fn request(prefix: &str, playlist: &str, live: &str) -> SegmentedFileOutput {
    SegmentedFileOutput {
        filename_prefix: prefix.into(),
        playlist_name: playlist.into(),
        live_playlist_name: live.into(),
        ..Default::default()
    }
}

fn naming(prefix: &str, playlist: &str, live: &str) -> Result<SegmentNaming, SegmentNamingError> {
    SegmentNaming::from_request(
        &request(prefix, playlist, live),
        &FilenameInfo::new("", "", 0, now()),
        0,
    )
}

/// Go's `TestSegmentNaming` (config_test.go): prefix, playlist, live playlist →
/// storage dir, playlist file, live playlist file, segment prefix.
#[test]
fn go_segment_naming_matrix() {
    let matrix = [
        ("", "playlist", "", "", "playlist.m3u8", "", "playlist"),
        (
            "",
            "conf_test/playlist",
            "conf_test/live_playlist",
            "conf_test/",
            "playlist.m3u8",
            "live_playlist.m3u8",
            "playlist",
        ),
        (
            "filename",
            "",
            "live_playlist2.m3u8",
            "",
            "filename.m3u8",
            "live_playlist2.m3u8",
            "filename",
        ),
        (
            "filename",
            "playlist",
            "",
            "",
            "playlist.m3u8",
            "",
            "filename",
        ),
        (
            "filename",
            "conf_test/",
            "",
            "conf_test/",
            "filename.m3u8",
            "",
            "filename",
        ),
        (
            "filename",
            "conf_test/playlist",
            "",
            "conf_test/",
            "playlist.m3u8",
            "",
            "filename",
        ),
        (
            "conf_test/",
            "playlist",
            "",
            "conf_test/",
            "playlist.m3u8",
            "",
            "playlist",
        ),
        (
            "conf_test/filename",
            "playlist",
            "",
            "conf_test/",
            "playlist.m3u8",
            "",
            "filename",
        ),
        (
            "conf_test/filename",
            "conf_test/playlist",
            "",
            "conf_test/",
            "playlist.m3u8",
            "",
            "filename",
        ),
        (
            "conf_test_2/filename",
            "conf_test/playlist",
            "",
            "conf_test/",
            "playlist.m3u8",
            "",
            "conf_test_2/filename",
        ),
    ];
    for (prefix, playlist, live, dir, playlist_file, live_file, segment_prefix) in matrix {
        let n = naming(prefix, playlist, live)
            .unwrap_or_else(|e| panic!("{prefix:?} {playlist:?}: {e}"));
        let case = format!("prefix {prefix:?} playlist {playlist:?} live {live:?}");
        assert_eq!(n.storage_dir, dir, "{case}");
        assert_eq!(n.playlist_filename, playlist_file, "{case}");
        assert_eq!(
            n.live_playlist_filename.as_deref().unwrap_or(""),
            live_file,
            "{case}"
        );
        assert_eq!(n.segment_prefix, segment_prefix, "{case}");
        assert_eq!(n.segment_duration, 4);
        assert_eq!(n.suffix, SegmentSuffix::Index);
    }
}

/// Go's `TestSegmentOutputRetrySafety` (retry_test.go).
#[test]
fn go_retry_safety_table() {
    let table = [
        (
            "first attempt with explicit prefix",
            0,
            "segments/my-stream",
            "segments/playlist",
            false,
        ),
        ("retry with both empty (auto-generated)", 1, "", "", false),
        (
            "retry with {retry} in prefix only",
            1,
            "segments/my-stream-{retry}",
            "segments/playlist",
            false,
        ),
        (
            "retry with {retry} in playlist only (prefix explicit)",
            1,
            "segments/my-stream",
            "segments/playlist-{retry}",
            true,
        ),
        (
            "retry with {retry} in both",
            1,
            "segments/my-stream-{retry}",
            "segments/playlist-{retry}",
            false,
        ),
        (
            "retry with explicit prefix missing {retry}",
            1,
            "segments/my-stream",
            "",
            true,
        ),
        (
            "retry with {retry} in playlist only (prefix empty, derives from playlist)",
            1,
            "",
            "segments/playlist-{retry}",
            false,
        ),
        (
            "retry with explicit playlist missing {retry}",
            1,
            "",
            "segments/playlist",
            true,
        ),
        (
            "retry with both explicit and neither has {retry}",
            1,
            "segments/my-stream",
            "segments/playlist",
            true,
        ),
    ];
    for (name, retry, prefix, playlist, expect_err) in table {
        let info = FilenameInfo::new("test-room", "RM_1", retry, now());
        let got = SegmentNaming::from_request(&request(prefix, playlist, ""), &info, retry);
        if expect_err {
            assert_eq!(got, Err(SegmentNamingError::NotRetrySafe), "{name}");
        } else {
            assert!(got.is_ok(), "{name}: {got:?}");
        }
    }
    assert_eq!(
        SegmentNamingError::NotRetrySafe.to_string(),
        "output configuration does not support retry"
    );
}

#[test]
fn defaults_use_identifier_time_and_retry() {
    let n = SegmentNaming::from_request(
        &request("", "", ""),
        &FilenameInfo::new("my-room", "RM_1", 0, now()),
        0,
    )
    .unwrap();
    assert_eq!(n.playlist_filename, "my-room-2024-03-05T070809.m3u8");
    assert_eq!(n.segment_prefix, "my-room-2024-03-05T070809");
    assert_eq!(n.playlist_path(), "my-room-2024-03-05T070809.m3u8");
    assert_eq!(n.live_playlist_path(), None);
    let n = SegmentNaming::from_request(
        &request("", "", ""),
        &FilenameInfo::new("", "", 2, now()),
        2,
    )
    .unwrap();
    assert_eq!(n.playlist_filename, "web-2024-03-05T070809-2.m3u8");
    let n = SegmentNaming::from_request(
        &request("", "out/", ""),
        &FilenameInfo::new("r", "", 0, now()),
        0,
    )
    .unwrap();
    assert_eq!(
        (n.storage_dir.as_str(), n.playlist_filename.as_str()),
        ("out/", "r-2024-03-05T070809.m3u8")
    );
    assert_eq!(n.playlist_path(), "out/r-2024-03-05T070809.m3u8");
}

#[test]
fn templating_and_retry_placeholders() {
    let info = FilenameInfo::new("standup", "RM_9", 3, now());
    let n = SegmentNaming::from_request(
        &request(
            "{room_name}/{room_id}-{retry}",
            "{room_name}/index-{retry}",
            "{room_name}/live",
        ),
        &info,
        3,
    )
    .unwrap();
    assert_eq!(n.storage_dir, "standup/");
    assert_eq!(n.playlist_filename, "index-3.m3u8");
    assert_eq!(n.live_playlist_filename.as_deref(), Some("live.m3u8"));
    assert_eq!(n.segment_prefix, "RM_9-3");
    assert_eq!(n.live_playlist_path().as_deref(), Some("standup/live.m3u8"));
    let n = SegmentNaming::from_request(&request("seg-{utc}", "p-{time}", ""), &info, 0).unwrap();
    assert_eq!(n.segment_prefix, "seg-20240305070809042");
    assert_eq!(n.playlist_filename, "p-2024-03-05T070809.m3u8");
}

#[test]
fn extensions_are_stripped_like_go() {
    for (playlist, file) in [
        ("show.m3u8", "show.m3u8"),
        ("show.mp4", "show.m3u8"),
        ("show.v2", "show.m3u8"),
        ("a.b.c", "a.b.m3u8"),
        ("dir.d/name", "name.m3u8"),
    ] {
        assert_eq!(
            naming("", playlist, "").unwrap().playlist_filename,
            file,
            "{playlist}"
        );
    }
    // Go: a name that is only an extension falls back to the prefix.
    assert_eq!(
        naming("pre", ".m3u8", "").unwrap().playlist_filename,
        "pre.m3u8"
    );
}

#[test]
fn segment_names_for_both_suffixes() {
    let n = naming("conf_test_2/filename", "conf_test/playlist", "").unwrap();
    assert_eq!(n.segment_name(0, now()), "conf_test_2/filename_00000.ts");
    assert_eq!(
        n.segment_name(123_456, now()),
        "conf_test_2/filename_123456.ts",
        "%05d grows past 5 digits"
    );
    assert_eq!(
        n.segment_path(&n.segment_name(7, now())),
        "conf_test/conf_test_2/filename_00007.ts"
    );
    assert_eq!(n.segment_dir(), "conf_test_2/");
    let mut req = request("seg", "", "");
    req.filename_suffix = SegmentedFileSuffix::Timestamp as i32;
    let n = SegmentNaming::from_request(&req, &FilenameInfo::new("", "", 0, now()), 0).unwrap();
    assert_eq!(n.suffix, SegmentSuffix::Timestamp);
    assert_eq!(n.segment_name(5, now()), "seg_20240305070809042.ts");
    assert_eq!(n.segment_dir(), "");
}

#[test]
fn live_playlist_rules_have_gos_errors() {
    assert_eq!(
        naming("", "a/playlist", "b/live").unwrap_err().to_string(),
        "request has missing or invalid field: live_playlist_name must be in same directory as playlist_name"
    );
    // Go checks against the playlist's own directory, before the prefix's directory is adopted.
    assert!(naming("conf_test/x", "playlist", "conf_test/live").is_err());
    assert_eq!(
        naming("", "playlist", "playlist.m3u8")
            .unwrap_err()
            .to_string(),
        "request has missing or invalid field: live_playlist_name cannot be identical to playlist_name"
    );
    assert!(
        naming("", "dir/p.v1", "dir/p.v2").is_err(),
        "both strip to p.m3u8"
    );
    assert_eq!(
        naming("", "dir/p", "dir/").unwrap_err(),
        SegmentNamingError::InvalidInput("live_playlist_name")
    );
    assert_eq!(
        naming("", "p", ".m3u8").unwrap_err(),
        SegmentNamingError::InvalidInput("live_playlist_name")
    );
}

#[test]
fn field_errors() {
    let with = |f: &dyn Fn(&mut SegmentedFileOutput)| {
        let mut r = request("p", "", "");
        f(&mut r);
        SegmentNaming::from_request(&r, &FilenameInfo::new("", "", 0, now()), 0)
    };
    assert_eq!(
        with(&|r| r.segment_duration = 0).unwrap().segment_duration,
        4
    );
    assert_eq!(
        with(&|r| r.segment_duration = 1).unwrap().segment_duration,
        1
    );
    assert_eq!(
        with(&|r| r.segment_duration = 3600)
            .unwrap()
            .segment_duration,
        3600
    );
    assert_eq!(
        with(&|r| r.segment_duration = 3601)
            .unwrap_err()
            .to_string(),
        "request has missing or invalid field: segment_duration"
    );
    assert_eq!(
        with(&|r| r.segment_duration = u32::MAX).unwrap_err(),
        SegmentNamingError::InvalidInput("segment_duration")
    );
    assert_eq!(
        with(&|r| r.filename_suffix = 7).unwrap_err(),
        SegmentNamingError::InvalidInput("filename_suffix")
    );
    assert_eq!(
        with(&|r| r.protocol = 9).unwrap_err(),
        SegmentNamingError::InvalidInput("protocol")
    );
    assert!(with(&|r| r.protocol = SegmentedFileProtocol::HlsProtocol as i32).is_ok());
    assert_eq!(
        with(&|r| r.filename_prefix = "x".repeat(1010)).unwrap_err(),
        SegmentNamingError::InvalidInput("filename_prefix")
    );
    assert_eq!(
        with(&|r| r.playlist_name = "y".repeat(1100)).unwrap_err(),
        SegmentNamingError::InvalidInput("playlist_name")
    );
    assert_eq!(
        with(&|r| r.live_playlist_name = "z".repeat(1100)).unwrap_err(),
        SegmentNamingError::InvalidInput("live_playlist_name")
    );
}

fn assert_inside_root(n: &SegmentNaming) {
    let paths = [
        n.playlist_path(),
        n.live_playlist_path().unwrap_or_default(),
        n.segment_path(&n.segment_name(0, now())),
    ];
    for p in paths {
        assert!(!p.split('/').any(|c| c == ".."), "{p} escapes: {n:?}");
    }
}

#[test]
fn traversal_never_escapes_the_storage_root() {
    for (prefix, playlist, live) in [
        ("../../etc/passwd", "", ""),
        ("", "../../../playlist", "../../../live"),
        ("a/../../b/seg", "../x/", ""),
        ("./../", "..", ""),
        ("{room_name}/seg", "{room_name}/pl", "{room_name}/live"),
        ("", "", ""),
        ("x/{room_name}", "", ""),
    ] {
        for room in ["../../../etc", "a/../../..", "..", "normal"] {
            let info = FilenameInfo::new(room, "RM", 0, now());
            if let Ok(n) = SegmentNaming::from_request(&request(prefix, playlist, live), &info, 0) {
                assert_inside_root(&n);
            }
        }
    }
    let info = FilenameInfo::new("../../../etc", "RM", 0, now());
    let n =
        SegmentNaming::from_request(&request("{room_name}/seg", "{room_name}/pl", ""), &info, 0)
            .unwrap();
    assert_eq!(
        (n.storage_dir.as_str(), n.segment_prefix.as_str()),
        ("etc/", "seg")
    );
    let n = SegmentNaming::from_request(
        &request("", "", ""),
        &FilenameInfo::new("a/b", "", 0, now()),
        0,
    )
    .unwrap();
    assert_eq!(
        n.playlist_filename, "a_b-2024-03-05T070809.m3u8",
        "one path element"
    );
    assert_eq!(n.storage_dir, "");
}

#[test]
fn unicode_names() {
    let info = FilenameInfo::new("réunion 🎥", "RM", 0, now());
    let n = SegmentNaming::from_request(&request("", "", ""), &info, 0).unwrap();
    assert_eq!(n.playlist_filename, "réunion 🎥-2024-03-05T070809.m3u8");
    let n = naming("émission/partie", "émission/liste.m3u8", "émission/direct").unwrap();
    assert_eq!(n.playlist_path(), "émission/liste.m3u8");
    assert_eq!(n.segment_name(1, now()), "partie_00001.ts");
    assert_eq!(
        n.live_playlist_path().as_deref(),
        Some("émission/direct.m3u8")
    );
}
