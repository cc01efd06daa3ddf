//! The `dsi` binary end to end: output contracts, exit codes, files written.

mod common;

use common::{dsi, stderr};

#[test]
fn simulate_json_has_the_documented_fields() {
    let out = dsi(&[
        "simulate",
        "--c",
        "0.1",
        "--a",
        "0.9",
        "--k",
        "5",
        "--servers",
        "7",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "nonsi",
        "si",
        "dsi",
        "speedup_dsi_over_si",
        "speedup_dsi_over_nonsi",
        "speedup_si_over_nonsi",
        "min_servers",
    ] {
        assert!(json.get(field).is_some(), "missing {field} in {json}");
    }
    let num = |f: &str| json[f].as_f64().unwrap();
    assert_eq!(num("nonsi"), 1000.0);
    assert_eq!(json["min_servers"].as_u64(), Some(2));
    assert!(num("dsi") < num("si") && num("si") < num("nonsi"));
    assert!((num("speedup_dsi_over_si") - num("si") / num("dsi")).abs() < 1e-9);
}

#[test]
fn simulate_is_reproducible_for_a_seed() {
    let args = [
        "simulate",
        "--c",
        "0.2",
        "--a",
        "0.7",
        "--k",
        "3",
        "--servers",
        "2",
        "--seed",
        "9",
        "--format",
        "json",
    ];
    assert_eq!(dsi(&args).stdout, dsi(&args).stdout);
}

#[test]
fn simulate_text_names_every_algorithm() {
    let out = dsi(&[
        "simulate",
        "--c",
        "0.05",
        "--a",
        "0.8",
        "--k",
        "4",
        "--servers",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["non-SI", "SI", "DSI", "closed form", "DSI over SI"] {
        assert!(text.contains(word), "{word} missing from:\n{text}");
    }
}

#[test]
fn too_few_servers_exit_2_and_name_the_minimum() {
    let out = dsi(&[
        "simulate",
        "--c",
        "0.05",
        "--a",
        "0.5",
        "--k",
        "2",
        "--servers",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("at least 10"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn out_of_range_inputs_exit_2_with_one_line() {
    let base = |c: &str, a: &str, k: &str| {
        vec!["simulate", "--c", c, "--a", a, "--k", k, "--servers", "100"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let mut cases = vec![
        (base("0", "0.5", "3"), "invalid c"),
        (base("1.5", "0.5", "3"), "invalid c"),
        (base("-0.1", "0.5", "3"), "invalid c"),
        (base("0.5", "1.2", "3"), "invalid a"),
        (base("0.5", "-0.2", "3"), "invalid a"),
        (base("0.5", "0.5", "0"), "invalid k"),
    ];
    let mut zero_tokens = base("0.5", "0.5", "3");
    zero_tokens.extend(["--tokens".into(), "0".into()]);
    cases.push((zero_tokens, "invalid tokens"));
    let mut zero_repeats = base("0.5", "0.5", "3");
    zero_repeats.extend(["--repeats".into(), "0".into()]);
    cases.push((zero_repeats, "invalid repeats"));
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = dsi(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn malformed_numbers_and_missing_flags_exit_2() {
    assert_eq!(
        dsi(&[
            "simulate",
            "--c",
            "abc",
            "--a",
            "0.5",
            "--k",
            "1",
            "--servers",
            "1"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        dsi(&["simulate", "--c", "0.5", "--a", "0.5", "--k", "1"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        dsi(&[
            "simulate",
            "--c",
            "NaN",
            "--a",
            "0.5",
            "--k",
            "1",
            "--servers",
            "1"
        ])
        .status
        .code(),
        Some(2)
    );
}

#[test]
fn heatmap_writes_csv_png_and_svg() {
    let dir = std::env::temp_dir().join(format!("dsi-heatmap-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dsi(&[
        "simulate",
        "heatmap",
        "--out",
        dir.to_str().unwrap(),
        "--ndim",
        "4",
        "--tokens",
        "100",
        "--repeats",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let csv = std::fs::read_to_string(dir.join("heatmap.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..7],
        [
            "c",
            "a",
            "nonsi_cost",
            "si_k",
            "si_cost",
            "dsi_k",
            "dsi_cost"
        ]
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    // 5 x 5 cells; every k in 1..=4 fits 7 servers once c >= 0.25, none at c = 0.01.
    assert_eq!(rows.len(), 20, "{csv}");
    for row in &rows {
        assert_eq!(row.len(), header.len());
        let (si_cost, dsi_cost) = (row[4], row[6]);
        assert!(dsi_cost <= si_cost.min(row[2]) + 1e-9, "{row:?}");
        assert!((row[8] - si_cost / dsi_cost).abs() < 1e-5, "{row:?}");
    }

    let png = std::fs::read(dir.join("heatmap.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let svg = std::fs::read_to_string(dir.join("heatmap.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("DSI over SI") && svg.contains("acceptance rate a")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn heatmap_refuses_a_zero_grid() {
    let out = dsi(&[
        "simulate",
        "heatmap",
        "--out",
        "/tmp/never-written",
        "--ndim",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
