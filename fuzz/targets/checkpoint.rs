//! A checkpoint's files from bytes: `config.json` text, and a safetensors
//! file whose tensors are read with the shapes its header claims and with
//! wrong ones. Malformed input is an error, never a panic or a huge
//! allocation.

use dsi_models::checkpoint::SafetensorsFiles;
use dsi_models::config::ModelConfig;

pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = ModelConfig::from_json(text)
    {
        assert!(config.vocab_size > 0 && config.max_context > 0);
    }
    let Ok(files) = SafetensorsFiles::from_bytes(vec![("model.safetensors".into(), data.to_vec())])
    else {
        return;
    };
    let claimed = header_shapes(data);
    let names: Vec<String> = files.names().map(str::to_string).collect();
    for name in names {
        let mut shapes = vec![vec![], vec![1], vec![2, 3]];
        if let Some((_, shape)) = claimed.iter().find(|(n, _)| *n == name) {
            shapes.push(shape.clone());
        }
        for shape in shapes {
            let _ = files.read(&name, &shape);
        }
    }
}

/// The shapes the header claims, read independently of the loader.
fn header_shapes(data: &[u8]) -> Vec<(String, Vec<usize>)> {
    let Some(len) = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    else {
        return Vec::new();
    };
    let Some(header) = data.get(8..8usize.saturating_add(len as usize)) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(tensors)) = serde_json::from_slice(header) else {
        return Vec::new();
    };
    tensors
        .into_iter()
        .filter_map(|(name, info)| {
            let shape = info["shape"]
                .as_array()?
                .iter()
                .map(|d| d.as_u64().map(|d| d.min(1 << 20) as usize))
                .collect::<Option<Vec<_>>>()?;
            Some((name, shape))
        })
        .collect()
}
