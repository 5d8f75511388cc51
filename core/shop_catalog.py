"""The product catalog of the two demo shops (a pet shop and an outdoor retailer).

The workload generator (``offline.generator``) sells these products, and the replenishment predictor
(``core.replenishment.catalog_from_generator``) takes its default cycles from the consumables among them
(``cycle_days`` > 0), so the two cannot drift apart and the pure core needs no tool package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    category: str
    shop: str  # "pet" or "outdoor"
    price: int  # minor units
    sizes: tuple[str, ...] = ()
    cycle_days: int = 0  # consumables: typical days between purchases (0: not a consumable)


CATALOG: tuple[Product, ...] = (
    Product("pet-dogfood-adult-12kg", "Adult Dog Food 12 kg", "dog-food", "pet", 5499, cycle_days=30),
    Product("pet-dogfood-puppy-4kg", "Puppy Dog Food 4 kg", "dog-food", "pet", 2499, cycle_days=21),
    Product("pet-catfood-dry-6kg", "Dry Cat Food 6 kg", "cat-food", "pet", 3250, cycle_days=28),
    Product("pet-catlitter-clump-10l", "Clumping Cat Litter 10 l", "cat-litter", "pet", 1299, cycle_days=14),
    Product("pet-toy-rope", "Tug Rope Toy", "puppy-toys", "pet", 799),
    Product("pet-toy-squeaky-duck", "Squeaky Duck", "puppy-toys", "pet", 549),
    Product("pet-harness-padded", "Padded Dog Harness", "dog-accessories", "pet", 2990, ("S", "M", "L", "XL")),
    Product("pet-leash-2m", "Dog Leash 2 m", "dog-accessories", "pet", 1490),
    Product("pet-scratcher-tower", "Cat Scratching Tower", "cat-accessories", "pet", 3900),
    Product("out-rope-9mm-60m", "Dynamic Rope 9 mm 60 m", "climbing-rope", "outdoor", 14900),
    Product("out-rope-10mm-70m", "Dynamic Rope 10 mm 70 m", "climbing-rope", "outdoor", 17900),
    Product("out-tent-2p", "Trekking Tent 2 Person", "tents", "outdoor", 22900),
    Product("out-tent-4p", "Family Tent 4 Person", "tents", "outdoor", 38900),
    Product(
        "out-boots-trail",
        "Trail Hiking Boots",
        "hiking-boots",
        "outdoor",
        13995,
        tuple(str(size) for size in range(38, 47)),
    ),
    Product(
        "out-boots-alpine",
        "Alpine Hiking Boots",
        "hiking-boots",
        "outdoor",
        21900,
        tuple(str(size) for size in range(38, 47)),
    ),
    Product("out-jacket-rain", "Rain Jacket", "jackets", "outdoor", 11900, ("XS", "S", "M", "L", "XL", "XXL")),
    Product("out-socks-merino", "Merino Hiking Socks", "socks", "outdoor", 1800, ("S", "M", "L")),
    Product("out-gas-230g", "Gas Canister 230 g", "gas-canisters", "outdoor", 650, cycle_days=45),
)
