use std::collections::BTreeSet;

use super::*;
use crate::report::graph::{Edge, Node, NodeKind};

/// A deterministic stream of pseudo-random numbers.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

fn node(kind: NodeKind) -> Node {
    Node { kind, label: String::new(), title: String::new(), detail: String::new() }
}

fn file(number: usize) -> Node {
    node(NodeKind::File { path: format!("/data/{number}.csv"), written: false, changed: false, removed: false })
}

fn edge(from: usize, to: usize, kind: EdgeKind) -> Edge {
    Edge { from, to, kind, via_task: false, names: Vec::new() }
}

/// `steps` cells and `files` files: some files only read, some written
/// then read by later (and, now and then, earlier) cells, and names passed
/// between cells.
fn random_graph(seed: u64, steps: usize, files: usize) -> Graph {
    let mut random = Lcg(seed);
    let mut graph = Graph { nodes: Vec::new(), edges: Vec::new(), steps };
    for index in 0..steps {
        graph.nodes.push(node(NodeKind::Cell { index, stale: index % 7 == 3, error: false }));
    }
    let mut seen = BTreeSet::new();
    let mut add = |graph: &mut Graph, from: usize, to: usize, kind: EdgeKind| {
        if seen.insert((from, to)) {
            graph.edges.push(edge(from, to, kind));
        }
    };
    for number in 0..files {
        let id = graph.nodes.len();
        graph.nodes.push(file(number));
        let written = random.below(2) == 0;
        let first = random.below(steps);
        if written {
            add(&mut graph, first, id, EdgeKind::Writes);
            if random.below(5) == 0 {
                add(&mut graph, random.below(steps), id, EdgeKind::Writes);
            }
        }
        for _ in 0..random.below(4) {
            let reader =
                if written && random.below(6) > 0 { first + random.below(steps - first) } else { random.below(steps) };
            add(&mut graph, id, reader, EdgeKind::Reads);
        }
        if !written {
            add(&mut graph, id, first, EdgeKind::Reads);
        }
    }
    for _ in 0..steps {
        let definer = random.below(steps - 1);
        let user = definer + 1 + random.below(steps - definer - 1);
        add(&mut graph, definer, user, EdgeKind::Names);
    }
    graph
}

/// Who owns a line: edges of one owner may share it, others may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Names(usize),
    Bus(usize),
    Trunk(bool, usize),
}

fn owner(graph: &Graph, edge: &Edge) -> Owner {
    if edge.kind == EdgeKind::Names {
        return Owner::Names(edge.from);
    }
    let file = if edge.kind == EdgeKind::Reads { edge.from } else { edge.to };
    let steps: BTreeSet<usize> = graph
        .edges
        .iter()
        .filter(|other| other.kind != EdgeKind::Names && (other.from == file || other.to == file))
        .map(|other| if other.kind == EdgeKind::Reads { other.to } else { other.from })
        .collect();
    let written = graph.edges.iter().any(|other| other.kind == EdgeKind::Writes && other.to == file);
    match steps.iter().next() {
        Some(&step) if steps.len() == 1 => Owner::Trunk(written, step),
        _ => Owner::Bus(file),
    }
}

fn on_boundary(rect: &Rect, (x, y): (f64, f64)) -> bool {
    ((x - rect.x).abs() < 0.01 || (x - rect.right()).abs() < 0.01) && y >= rect.y && y <= rect.bottom()
}

/// Whether the segment enters the inside of the rectangle.
fn crosses(rect: &Rect, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) -> bool {
    let inset = 0.5;
    x1.max(x2) > rect.x + inset
        && x1.min(x2) < rect.right() - inset
        && y1.max(y2) > rect.y + inset
        && y1.min(y2) < rect.bottom() - inset
}

/// Every property the drawing relies on.
fn check(graph: &Graph, layout: &Layout) {
    assert_eq!(layout.nodes.len(), graph.nodes.len());
    // No two nodes overlap (nor touch).
    for (a, first) in layout.nodes.iter().enumerate() {
        assert!(first.x >= 0.0 && first.y >= 0.0, "node {a} at {first:?}");
        assert!(first.right() <= layout.width && first.bottom() <= layout.height, "node {a} outside: {first:?}");
        for (b, second) in layout.nodes.iter().enumerate().skip(a + 1) {
            let apart = first.right() + 2.0 <= second.x
                || second.right() + 2.0 <= first.x
                || first.bottom() + 2.0 <= second.y
                || second.bottom() + 2.0 <= first.y;
            assert!(apart, "nodes {a} and {b} overlap: {first:?} {second:?}");
        }
    }
    // The cells keep their order, top to bottom, in one column.
    for pair in layout.nodes[..graph.steps].windows(2) {
        assert!(pair[0].bottom() < pair[1].y && pair[0].x == pair[1].x, "{pair:?}");
    }
    // Every edge is drawn, from its source to its target, orthogonally, and
    // through no node.
    assert_eq!(layout.routes.len(), graph.edges.len());
    let mut segments = Vec::new();
    for (index, (edge, route)) in graph.edges.iter().zip(&layout.routes).enumerate() {
        assert!(route.len() >= 2, "edge {index} has no route");
        let (first, last) = (route[0], route[route.len() - 1]);
        assert!(on_boundary(&layout.nodes[edge.from], first), "edge {index} starts off its source: {route:?}");
        assert!(on_boundary(&layout.nodes[edge.to], last), "edge {index} ends off its target: {route:?}");
        for pair in route.windows(2) {
            let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
            assert!(x1 == x2 || y1 == y2, "edge {index} is not orthogonal: {route:?}");
            assert!(x1.is_finite() && y1.is_finite() && x1 >= 0.0 && x1 <= layout.width && y1 <= layout.height);
            for (other, rect) in layout.nodes.iter().enumerate() {
                assert!(!crosses(rect, pair[0], pair[1]), "edge {index} crosses node {other}: {route:?} {rect:?}");
            }
            segments.push((owner(graph, edge), pair[0], pair[1]));
        }
    }
    // Lines of different owners never run along each other.
    for (a, (first_owner, a1, a2)) in segments.iter().enumerate() {
        for (second_owner, b1, b2) in &segments[a + 1..] {
            if first_owner == second_owner {
                continue;
            }
            let overlap =
                |(p1, p2): (f64, f64), (q1, q2): (f64, f64)| p1.max(p2).min(q1.max(q2)) - p1.min(p2).max(q1.min(q2));
            let vertical = |(x1, _): (f64, f64), (x2, _): (f64, f64)| x1 == x2;
            let horizontal = |(_, y1): (f64, f64), (_, y2): (f64, f64)| y1 == y2;
            if vertical(*a1, *a2) && vertical(*b1, *b2) && (a1.0 - b1.0).abs() < 1.0 && a1.1 != a2.1 && b1.1 != b2.1 {
                let shared = overlap((a1.1, a2.1), (b1.1, b2.1));
                assert!(
                    shared <= 0.0,
                    "{first_owner:?} and {second_owner:?} share a lane: {a1:?}-{a2:?}, {b1:?}-{b2:?}"
                );
            }
            if horizontal(*a1, *a2) && horizontal(*b1, *b2) && (a1.1 - b1.1).abs() < 2.0 && a1.0 != a2.0 && b1.0 != b2.0
            {
                let shared = overlap((a1.0, a2.0), (b1.0, b2.0));
                assert!(
                    shared <= 0.0,
                    "{first_owner:?} and {second_owner:?} run together: {a1:?}-{a2:?}, {b1:?}-{b2:?}"
                );
            }
        }
    }
}

#[test]
fn thirty_cells_and_sixty_files_are_laid_out_without_overlaps() {
    for seed in 1..=20 {
        let graph = random_graph(seed, 30, 60);
        let layout = layout(&graph);
        check(&graph, &layout);
        // Readable: about a screen wide, and not absurdly tall.
        assert!(layout.width < 1400.0, "seed {seed}: {} wide", layout.width);
        assert!(layout.height < 30.0 * 120.0, "seed {seed}: {} tall", layout.height);
    }
}

#[test]
fn small_and_lopsided_graphs_are_laid_out_without_overlaps() {
    for (steps, files) in [(1, 1), (1, 40), (2, 0), (3, 5), (8, 2), (60, 120)] {
        for seed in 1..=5 {
            let graph = if steps == 1 {
                // One step: the whole run, with its inputs and outputs.
                let mut graph = Graph { nodes: vec![node(NodeKind::Run)], edges: Vec::new(), steps: 1 };
                for number in 0..files {
                    graph.nodes.push(file(number));
                    let id = graph.nodes.len() - 1;
                    graph.edges.push(if number % 3 == 0 {
                        edge(0, id, EdgeKind::Writes)
                    } else {
                        edge(id, 0, EdgeKind::Reads)
                    });
                }
                graph
            } else {
                random_graph(seed, steps, files)
            };
            check(&graph, &layout(&graph));
        }
    }
}

#[test]
fn files_sit_beside_their_first_writer_or_reader() {
    // Cell 0 reads a.csv and writes b.csv; cell 2 reads b.csv; cell 1 uses a name of cell 0.
    let mut graph = Graph { nodes: Vec::new(), edges: Vec::new(), steps: 3 };
    for index in 0..3 {
        graph.nodes.push(node(NodeKind::Cell { index, stale: false, error: false }));
    }
    graph.nodes.push(file(0));
    graph.nodes.push(file(1));
    graph.edges = vec![
        edge(3, 0, EdgeKind::Reads),
        edge(0, 4, EdgeKind::Writes),
        edge(4, 2, EdgeKind::Reads),
        edge(0, 1, EdgeKind::Names),
    ];
    let layout = layout(&graph);
    check(&graph, &layout);
    let [cell0, _, cell2, input, output] = layout.nodes[..] else { panic!("five nodes") };
    assert!(input.right() < cell0.x && cell0.right() < output.x, "input left, cells, output right");
    assert!(input.y < cell0.bottom() && input.bottom() > cell0.y, "the input beside its reader");
    assert!(output.y < cell0.bottom() && output.bottom() > cell0.y, "the output beside its writer");
    assert!(output.bottom() < cell2.y, "above its later reader");
    // The output's bus runs down to cell 2 and enters it from the right.
    let read = &layout.routes[2];
    assert_eq!(read.last().map(|point| point.0), Some(cell2.right()));
}
