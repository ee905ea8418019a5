//! Seeded fuzzing of the functions every request's body and query reach:
//! JSON, merge and strategic merge patches, selectors, quantities, and pod
//! defaulting and validation. Thousands of generated inputs per target, the
//! same on every run (a failure names its seed); the property is that none
//! panics and that patch results stay bounded. (`cargo fuzz` needs a
//! nightly toolchain; this runs on stable, in CI, in seconds.)

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Map, Value};
use skiff_api::patch::{depth, json_patch, merge_patch, strategic_merge_patch};
use skiff_api::quantity::Quantity;
use skiff_api::selector::LabelSelector;

/// xorshift64*: small, deterministic, good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "metadata", "spec", "status", "name", "labels", "annotations", "containers", "initContainers",
    "image", "env", "ports", "volumes", "containerPort", "value", "$patch", "$retainKeys",
    "$setElementOrder/containers", "$deleteFromPrimitiveList/finalizers", "finalizers", "a~b", "a/b", "",
    "0", "-", "securityContext", "resources", "limits", "cpu", "memory", "restartPolicy",
];
const STRINGS: &[&str] = &[
    "", "x", "busybox", "replace", "delete", "merge", "Always", "-1", "1e309", "100Mi", "0.5", "\u{0}",
    "\u{feff}", "../../etc", "a=b", "ñ", "9999999999999999999999",
];

fn value(rng: &mut Rng, levels: usize) -> Value {
    match rng.below(if levels == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64 >> rng.below(64)),
        3 => json!(f64::from(rng.below(1000) as u32) / 7.0),
        4 => Value::String(rng.pick(STRINGS).to_string()),
        5 | 6 => {
            let mut map = Map::new();
            for _ in 0..rng.below(5) {
                map.insert(rng.pick(KEYS).to_string(), value(rng, levels - 1));
            }
            Value::Object(map)
        }
        _ => Value::Array((0..rng.below(4)).map(|_| value(rng, levels - 1)).collect()),
    }
}

fn pointer(rng: &mut Rng) -> String {
    let mut path = String::new();
    for _ in 0..rng.below(5) {
        path.push('/');
        match rng.below(4) {
            0 => path.push_str(&rng.below(4).to_string()),
            1 => path.push_str(rng.pick(&["-", "~0", "~1", "~2", "~", "01", "18446744073709551616"])),
            _ => path.push_str(rng.pick(KEYS)),
        }
    }
    if rng.below(10) == 0 {
        path = path.trim_start_matches('/').to_string();
    }
    path
}

fn json_patch_document(rng: &mut Rng) -> Value {
    let ops = (0..rng.below(12))
        .map(|_| {
            let mut op = Map::new();
            op.insert("op".into(), json!(rng.pick(&["add", "remove", "replace", "move", "copy", "test", "bogus"])));
            if rng.below(12) != 0 {
                op.insert("path".into(), json!(pointer(rng)));
            }
            if rng.below(2) == 0 {
                op.insert("from".into(), json!(pointer(rng)));
            }
            if rng.below(3) != 0 {
                op.insert("value".into(), value(rng, 3));
            }
            Value::Object(op)
        })
        .collect();
    if rng.below(20) == 0 {
        value(rng, 2)
    } else {
        Value::Array(ops)
    }
}

fn pod_like(rng: &mut Rng) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "x"}, "finalizers": ["a"]},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
                                 "env": [{"name": "A", "value": "1"}]}],
                 "volumes": [{"name": "v", "emptyDir": {}}]}
    });
    // Graft a few random values into it.
    for _ in 0..rng.below(4) {
        let key = rng.pick(KEYS).to_string();
        let target = rng.pick(&["/spec", "/spec/containers/0", "/metadata"]);
        if let Some(Value::Object(map)) = pod.pointer_mut(target) {
            map.insert(key, value(rng, 3));
        }
    }
    pod
}

const CASES: u64 = 20_000;

#[test]
fn patches_never_panic_and_stay_bounded() {
    let schema = skiff_api::schema::for_kind("", "v1", "Pod");
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let original = pod_like(&mut rng);
        let size = original.to_string().len();
        let patch = json_patch_document(&mut rng);
        if let Ok(out) = json_patch(&original, &patch) {
            // At most 11 operations of values under a few KB each.
            assert!(out.to_string().len() < size + 64 * 1024, "seed {seed}: json patch grew without bound");
            assert!(depth(&out) <= 128, "seed {seed}");
        }
        let merge = value(&mut rng, 4);
        let _ = merge_patch(&original, &merge);
        let strategic = match rng.below(3) {
            0 => merge.clone(),
            _ => json!({"spec": {"containers": [value(&mut rng, 3), {"name": "c", "$patch": rng.pick(STRINGS)}]},
                        "metadata": {"$deleteFromPrimitiveList/finalizers": value(&mut rng, 1),
                                     "$setElementOrder/finalizers": value(&mut rng, 1)}}),
        };
        let _ = strategic_merge_patch(&original, &strategic, schema);
        let _ = strategic_merge_patch(&original, &strategic, None);
    }
}

#[test]
fn pods_of_any_shape_default_and_validate_without_panicking() {
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        let Ok(mut pod) = serde_json::from_value::<Pod>(pod_like(&mut rng)) else {
            continue;
        };
        skiff_api::pod::apply_defaults(&mut pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let _ = skiff_api::pod::validate_spec(&spec);
        let _ = skiff_api::pod::check_quantities(&spec);
        let _ = skiff_api::pod::qos_class(&spec);
        let mut other = spec.clone();
        other.containers.reverse();
        let _ = skiff_api::pod::validate_spec_update(&spec, &other);
    }
}

#[test]
fn selectors_and_quantities_parse_anything() {
    const PIECES: &[&str] = &[
        "a", "b", "=", "==", "!=", "!", ",", " in ", " notin ", "(", ")", "x.io/k", "-", "_", ".", "exists",
        "1", "Mi", "Ki", "e", "E", "+", "-", ".", "m", "n", "u", "k", "G", "Ei", "99999999999999999999", " ",
    ];
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0xa076_1d64_78bd_642f) | 1);
        let text: String = (0..rng.below(10)).map(|_| rng.pick(PIECES)).collect();
        if let Ok(selector) = LabelSelector::parse(&text) {
            let labels = [("a".to_string(), "b".to_string())].into_iter().collect();
            let _ = selector.matches(&labels);
        }
        if let Some(q) = Quantity::parse(&text) {
            let _ = (q.canonical(), q.value(), q.milli_value());
        }
    }
}
