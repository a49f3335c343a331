//! The layout of the dependency graph, computed here so the page needs no
//! script: a layered, orthogonal drawing.
//!
//! - The steps (cells, in run order) form one column. Each step owns a
//!   horizontal band as tall as the files placed beside it need.
//! - A file no step writes goes in the left column, beside its first reader;
//!   a file a step writes goes in the right column, beside its first writer.
//!   So a file sits between its writer and its readers, and no two nodes can
//!   overlap: each band holds its own files, stacked.
//! - A file used by one step only reaches it through its band's trunk (a
//!   shared vertical line by the file column), into one port of the step.
//! - A file used by several steps gets a bus: a vertical lane in the gutter
//!   between the file column and the steps, with a branch to a port of each
//!   step. Lanes are assigned by interval colouring (a lane is reused once the
//!   previous bus in it has ended), so buses never overlap.
//! - Names defined by one cell and used by later ones run in a gutter of their
//!   own, left of the steps, the same way.
//!
//! Every edge is a polyline: horizontal from its node, vertical in its lane,
//! horizontal into the other node. Ports are spread along the step's sides in
//! the order of what they connect to, so branches do not cross each other at
//! the step.

use std::collections::BTreeMap;

use super::graph::{EdgeKind, Graph};

pub(super) const FILE_W: f64 = 220.0;
pub(super) const FILE_H: f64 = 22.0;
pub(super) const CELL_W: f64 = 200.0;
const CELL_H: f64 = 30.0;
const FILE_GAP: f64 = 6.0;
const BAND_GAP: f64 = 14.0;
const PORT_GAP: f64 = 7.0;
const LANE_GAP: f64 = 7.0;
/// Between a lane and what an arrow points at: room for the arrowhead.
const GUTTER_PAD: f64 = 18.0;
const TRUNK_PAD: f64 = 10.0;
const MARGIN: f64 = 8.0;
/// Two buses in one lane are at least this far apart.
const LANE_SEPARATION: f64 = 6.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn right(&self) -> f64 {
        self.x + self.w
    }
    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }
    pub fn center_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Layout {
    pub width: f64,
    pub height: f64,
    /// One per node of the graph.
    pub nodes: Vec<Rect>,
    /// One per edge of the graph, from its source to its target.
    pub routes: Vec<Vec<(f64, f64)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// Where a file goes, and how it connects.
struct Placement {
    side: Side,
    anchor: usize,
    /// Every edge of the file goes to its anchor: through the trunk.
    direct: bool,
}

/// What a port connects to, to order the ports of a side.
#[derive(Clone, Copy)]
enum PortTo {
    /// The band's trunk.
    Trunk,
    /// A file's bus, or a name edge's other cell.
    Node(usize),
    /// The name bus leaving a defining cell: as low as its lowest user.
    Users(usize),
}

/// The gutter a bus runs in.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Gutter {
    Left,
    Names,
    Right,
}

pub(super) fn layout(graph: &Graph) -> Layout {
    let steps = graph.steps;
    let node_count = graph.nodes.len();
    // Edges of each file, and where each file goes.
    let mut file_edges: Vec<Vec<usize>> = vec![Vec::new(); node_count];
    for (index, edge) in graph.edges.iter().enumerate() {
        match edge.kind {
            EdgeKind::Reads => file_edges[edge.from].push(index),
            EdgeKind::Writes => file_edges[edge.to].push(index),
            EdgeKind::Names => {}
        }
    }
    let step_of = |edge: usize| {
        let edge = &graph.edges[edge];
        if edge.kind == EdgeKind::Reads {
            edge.to
        } else {
            edge.from
        }
    };
    let mut placements: Vec<Option<Placement>> = (0..node_count).map(|_| None).collect();
    for file in steps..node_count {
        let edges = &file_edges[file];
        let writers =
            edges.iter().filter(|&&edge| graph.edges[edge].kind == EdgeKind::Writes).map(|&edge| step_of(edge));
        let (side, anchor) = match writers.min() {
            Some(writer) => (Side::Right, writer),
            None => (Side::Left, edges.iter().map(|&edge| step_of(edge)).min().unwrap_or(0)),
        };
        let direct = edges.iter().all(|&edge| step_of(edge) == anchor);
        placements[file] = Some(Placement { side, anchor, direct });
    }

    // The files of each band, ordered: those reaching up, those only beside
    // their step, those reaching down (by how far).
    let mut bands: Vec<[Vec<usize>; 2]> = vec![[Vec::new(), Vec::new()]; steps];
    for (file, placement) in placements.iter().enumerate() {
        if let Some(placement) = placement {
            bands[placement.anchor][placement.side as usize].push(file);
        }
    }
    for band in &mut bands {
        for files in band.iter_mut() {
            files.sort_by_cached_key(|&file| {
                let reach: Vec<usize> = file_edges[file].iter().map(|&edge| step_of(edge)).collect();
                let anchor = placements[file].as_ref().map_or(0, |placement| placement.anchor);
                let (low, high) = (reach.iter().min().copied(), reach.iter().max().copied());
                match (low, high) {
                    (Some(low), _) if low < anchor => (0, low, file),
                    (_, Some(high)) if high > anchor => (2, high, file),
                    _ => (1, 0, file),
                }
            });
        }
    }

    // The ports of each step's sides.
    let mut ports: Vec<[Vec<PortTo>; 2]> = vec![[Vec::new(), Vec::new()]; steps];
    // Per edge: its port at the step (for names, at the source and target).
    let mut edge_ports: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let add_port = |ports: &mut Vec<[Vec<PortTo>; 2]>, step: usize, side: Side, to: PortTo| {
        let list = &mut ports[step][side as usize];
        list.push(to);
        list.len() - 1
    };
    let mut trunk_ports: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (file, placement) in placements.iter().enumerate() {
        let Some(placement) = placement else { continue };
        for &edge in &file_edges[file] {
            let step = step_of(edge);
            let port = if placement.direct {
                *trunk_ports
                    .entry((step, placement.side as usize))
                    .or_insert_with(|| add_port(&mut ports, step, placement.side, PortTo::Trunk))
            } else {
                add_port(&mut ports, step, placement.side, PortTo::Node(file))
            };
            edge_ports.insert((edge, step), port);
        }
    }
    let mut name_out: BTreeMap<usize, usize> = BTreeMap::new();
    let mut lowest_user: BTreeMap<usize, usize> = BTreeMap::new();
    for edge in graph.edges.iter().filter(|edge| edge.kind == EdgeKind::Names) {
        let lowest = lowest_user.entry(edge.from).or_insert(edge.to);
        *lowest = (*lowest).max(edge.to);
    }
    for (index, edge) in graph.edges.iter().enumerate().filter(|(_, edge)| edge.kind == EdgeKind::Names) {
        let out = *name_out
            .entry(edge.from)
            .or_insert_with(|| add_port(&mut ports, edge.from, Side::Left, PortTo::Users(lowest_user[&edge.from])));
        edge_ports.insert((index, edge.from), out);
        let port = add_port(&mut ports, edge.to, Side::Left, PortTo::Node(edge.from));
        edge_ports.insert((index, edge.to), port);
    }

    // Bands, top to bottom; the vertical positions of every node.
    let stack = |count: usize| if count == 0 { 0.0 } else { count as f64 * (FILE_H + FILE_GAP) - FILE_GAP };
    let mut rects = vec![Rect::default(); node_count];
    let mut y = MARGIN;
    for step in 0..steps {
        let most_ports = ports[step][0].len().max(ports[step][1].len());
        let cell_h = CELL_H.max((most_ports + 1) as f64 * PORT_GAP);
        let band_h = cell_h.max(stack(bands[step][0].len())).max(stack(bands[step][1].len()));
        rects[step] = Rect { x: 0.0, y: y + (band_h - cell_h) / 2.0, w: CELL_W, h: cell_h };
        for files in &bands[step] {
            let top = y + (band_h - stack(files.len())) / 2.0;
            for (position, &file) in files.iter().enumerate() {
                rects[file] = Rect { x: 0.0, y: top + position as f64 * (FILE_H + FILE_GAP), w: FILE_W, h: FILE_H };
            }
        }
        y += band_h + BAND_GAP;
    }
    let height = y - BAND_GAP + MARGIN;

    // Port heights: spread along the side in the order of what they reach,
    // never level with a file of the band (their lines would merge).
    let mut port_y: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; steps];
    for step in 0..steps {
        for side in [Side::Left, Side::Right] {
            let list = &ports[step][side as usize];
            let cell = rects[step];
            let reach = |to: PortTo| match to {
                PortTo::Trunk => cell.center_y(),
                PortTo::Node(node) => rects[node].center_y(),
                PortTo::Users(user) => rects[user].bottom() + 1.0,
            };
            let mut order: Vec<usize> = (0..list.len()).collect();
            order.sort_by(|&a, &b| reach(list[a]).total_cmp(&reach(list[b])).then(a.cmp(&b)));
            let mut heights = vec![0.0; list.len()];
            for (rank, &port) in order.iter().enumerate() {
                let mut at = cell.y + (rank + 1) as f64 * cell.h / (list.len() + 1) as f64;
                // A bus file's line runs past the trunk and the lanes before
                // its own: a port level with it would merge with it.
                let own = match list[port] {
                    PortTo::Node(node) => Some(node),
                    _ => None,
                };
                let level_with_bus = bands[step][side as usize]
                    .iter()
                    .map(|&file| (file, rects[file].center_y()))
                    .find(|&(file, file_y)| {
                        Some(file) != own
                            && placements[file].as_ref().is_some_and(|placement| !placement.direct)
                            && (file_y - at).abs() < 3.0
                    });
                if let Some((_, file_y)) = level_with_bus {
                    at = if at >= file_y { file_y + 3.0 } else { file_y - 3.0 };
                }
                heights[port] = at;
            }
            port_y[step][side as usize] = heights;
        }
    }
    let port_at = |edge: usize, step: usize, side: Side| port_y[step][side as usize][edge_ports[&(edge, step)]];

    // Buses and their lanes.
    let mut buses: Vec<(Gutter, usize, f64, f64)> = Vec::new();
    for (file, placement) in placements.iter().enumerate() {
        let Some(placement) = placement else { continue };
        if placement.direct {
            continue;
        }
        let mut low = rects[file].center_y();
        let mut high = low;
        for &edge in &file_edges[file] {
            let at = port_at(edge, step_of(edge), placement.side);
            low = low.min(at);
            high = high.max(at);
        }
        let gutter = if placement.side == Side::Left { Gutter::Left } else { Gutter::Right };
        buses.push((gutter, file, low, high));
    }
    for (&definer, &out) in &name_out {
        let start = port_y[definer][Side::Left as usize][out];
        let mut high = start;
        for (index, edge) in graph.edges.iter().enumerate() {
            if edge.kind == EdgeKind::Names && edge.from == definer {
                high = high.max(port_at(index, edge.to, Side::Left));
            }
        }
        buses.push((Gutter::Names, definer, start, high));
    }
    buses.sort_by(|a, b| (a.0, a.2, a.3).partial_cmp(&(b.0, b.2, b.3)).unwrap_or(std::cmp::Ordering::Equal));
    let mut lane_of: BTreeMap<(Gutter, usize), usize> = BTreeMap::new();
    let mut lanes: BTreeMap<Gutter, Vec<f64>> = BTreeMap::new();
    for &(gutter, owner, low, high) in &buses {
        let ends = lanes.entry(gutter).or_default();
        let lane = match ends.iter().position(|&end| end + LANE_SEPARATION <= low) {
            Some(lane) => lane,
            None => {
                ends.push(0.0);
                ends.len() - 1
            }
        };
        ends[lane] = high;
        lane_of.insert((gutter, owner), lane);
    }
    let lane_count = |gutter: Gutter| lanes.get(&gutter).map_or(0, Vec::len) as f64;

    // Columns, left to right.
    let has_left = placements.iter().flatten().any(|placement| placement.side == Side::Left);
    let has_right = placements.iter().flatten().any(|placement| placement.side == Side::Right);
    let mut x = MARGIN;
    let (left_files, left_trunk, left_lanes) = (x, x + FILE_W + TRUNK_PAD, x + FILE_W + TRUNK_PAD + LANE_GAP);
    if has_left {
        x = left_lanes + LANE_GAP * lane_count(Gutter::Left) + GUTTER_PAD;
    }
    let name_lanes = x;
    if lane_count(Gutter::Names) > 0.0 {
        x += LANE_GAP * lane_count(Gutter::Names) + GUTTER_PAD;
    }
    let cells = x;
    let right_lanes = cells + CELL_W + GUTTER_PAD;
    let right_trunk = right_lanes + LANE_GAP * lane_count(Gutter::Right) + TRUNK_PAD;
    let right_files = right_trunk + GUTTER_PAD;
    let width = if has_right { right_files + FILE_W } else { cells + CELL_W } + MARGIN;
    for (node, rect) in rects.iter_mut().enumerate() {
        rect.x = match placements[node].as_ref().map(|placement| placement.side) {
            None => cells,
            Some(Side::Left) => left_files,
            Some(Side::Right) => right_files,
        };
    }
    let lane_x = |gutter: Gutter, owner: usize| {
        let lane = lane_of.get(&(gutter, owner)).copied().unwrap_or(0) as f64;
        match gutter {
            Gutter::Left => left_lanes + lane * LANE_GAP,
            Gutter::Names => name_lanes + lane * LANE_GAP,
            Gutter::Right => right_lanes + lane * LANE_GAP,
        }
    };

    let routes = graph
        .edges
        .iter()
        .enumerate()
        .map(|(index, edge)| {
            if edge.kind == EdgeKind::Names {
                let (from, to) = (rects[edge.from], rects[edge.to]);
                let (out, into) = (port_at(index, edge.from, Side::Left), port_at(index, edge.to, Side::Left));
                let lane = lane_x(Gutter::Names, edge.from);
                return vec![(from.x, out), (lane, out), (lane, into), (to.x, into)];
            }
            let (file, step) = if edge.kind == EdgeKind::Reads { (edge.from, edge.to) } else { (edge.to, edge.from) };
            let Some(placement) = &placements[file] else { return Vec::new() };
            let (rect, cell) = (rects[file], rects[step]);
            let at = port_at(index, step, placement.side);
            let mut route = match placement.side {
                Side::Left => {
                    let lane = if placement.direct { left_trunk } else { lane_x(Gutter::Left, file) };
                    vec![(rect.right(), rect.center_y()), (lane, rect.center_y()), (lane, at), (cell.x, at)]
                }
                Side::Right => {
                    let lane = if placement.direct { right_trunk } else { lane_x(Gutter::Right, file) };
                    vec![(rect.x, rect.center_y()), (lane, rect.center_y()), (lane, at), (cell.right(), at)]
                }
            };
            if edge.kind == EdgeKind::Writes {
                route.reverse();
            }
            route
        })
        .collect();
    Layout { width, height, nodes: rects, routes }
}

#[cfg(test)]
mod tests;
