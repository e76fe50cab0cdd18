#!/usr/bin/env python3
# Generates skyline.svg beside this file: a night silhouette of a 90s Manhattan-ish skyline.
import random
random.seed(1990)
W, H = 1920, 300
shapes = []   # building polygons/rects (dark)
windows = []
lights = []
dim = []
def rect(x, y, w, h):
    shapes.append(f'<rect x="{x}" y="{y}" width="{w}" height="{H-y}"/>')
    add_windows(x, y, w)
def add_windows(x, y, w, step_x=9, step_y=12):
    for wy in range(y + 10, H - 8, step_y):
        for wx in range(x + 5, x + w - 6, step_x):
            if random.random() < 0.11:
                (windows if random.random() < 0.6 else dim).append(f'<rect x="{wx}" y="{wy}" width="4" height="6"/>')
def water_tower(x, y):
    # legs, tank, cone roof: the rooftop water tanks every NYC skyline has
    shapes.append(f'<path d="M{x} {y} l3 -14 h18 l3 14 z M{x+2} {y-14} v-18 h20 v18 z M{x} {y-32} l12 -10 l12 10 z"/>')

x = 0
plan = []
# fill the width with generic blocks, then overlay landmarks
while x < W:
    w = random.randint(50, 110)
    h = random.randint(70, 170)
    plan.append((x, H - h, w))
    x += w - random.randint(0, 12)
for (bx, by, bw) in plan:
    rect(bx, by, bw, 0)
    if random.random() < 0.25:
        water_tower(bx + bw // 3, by)

# Empire State-like: stepped setbacks, mast
ex = 430
for (dx, y, w) in [(0, 150, 120), (15, 105, 90), (30, 75, 60), (42, 50, 36), (50, 32, 20)]:
    rect(ex + dx, y, w, 0)
shapes.append(f'<rect x="{ex+58}" y="0" width="4" height="34"/>')
lights.append(f'<circle cx="{ex+60}" cy="2" r="3"/>')
# Chrysler-like: arched crown with triangular windows
cx = 1300
rect(cx, 120, 80, 0)
rect(cx + 10, 85, 60, 0)
crown = f'M{cx+14} 86 Q{cx+40} 20 {cx+66} 86 Z'
shapes.append(f'<path d="{crown}"/>')
for i, r in enumerate([48, 36, 24]):
    # stacked arches of lit triangles
    y0 = 86 - (3 - i) * 0 - (i * 14)
    for k in range(-2, 3):
        tx = cx + 40 + k * (r / 3)
        windows.append(f'<path d="M{tx-3:.0f} {76 - i*14} l3 -7 l3 7 z"/>')
shapes.append(f'<rect x="{cx+38}" y="0" width="4" height="45"/>')
lights.append(f'<circle cx="{cx+40}" cy="3" r="3"/>')
# a couple of tall slabs with red beacons
for (tx, ty, tw) in [(820, 60, 70), (1640, 80, 60), (150, 95, 55)]:
    rect(tx, ty, tw, 0)
    lights.append(f'<circle cx="{tx + tw//2}" cy="{ty-3}" r="3"/>')
    shapes.append(f'<rect x="{tx + tw//2 - 1}" y="{ty-6}" width="2" height="6"/>')

svg = f'''<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" preserveAspectRatio="xMidYMax slice">
<!-- Night skyline drawn for vote-api (generated, see docs/ui.md). -->
<g fill="#07040a">{''.join(shapes)}</g>
<g fill="#ffd45a">{''.join(windows)}</g>
<g fill="#ff9f3a" opacity=".7">{''.join(dim)}</g>
<g fill="#ff2a4a">{''.join(lights)}</g>
</svg>
'''
open(__import__('os').path.join(__import__('os').path.dirname(__file__), 'skyline.svg'), 'w').write(svg)
print(f'skyline.svg: {len(svg)} bytes')
