#!/usr/bin/env python3
"""Generate the workload prompt sets in prompts/ (deterministic, seeded, no network).

  prompts/chat-mix.jsonl       >= 400 distinct chat prompts: short Q&A, instructions,
                               summarization of a 100-300 word paragraph, code questions,
                               RAG-style questions over a pasted 200-500 word context
  prompts/short-qa.jsonl       >= 200 short questions (5-20 words)
  prompts/known-answers.jsonl  questions with a known short answer, for a quality check:
                               {"id", "prompt", "answer", "accept": [accepted spellings]};
                               correct = an "accept" spelling occurs as a whole word, any case

Each line is a JSON object {"id": ..., "prompt": ..., "system"?: ...}. Prompts are all
distinct, and no two prompts in a file share a long common prefix (checked below), so a
server's prompt cache cannot make a trial look faster by accident.

Usage: gen_prompts.py [--out DIR] [--check]   (--check: fail if the files differ)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20261127
MAX_SHARED_PREFIX = 120  # characters; longer shared prefixes are rejected and redrawn

# ---------------------------------------------------------------------------------------------
# Document banks: ordered sentences about one subject, and questions answerable from them
# (each question names the sentence index that answers it, so a RAG context always holds it).

BANKS: list[dict] = [
    {
        "title": "Harbor City Public Library lending policy",
        "sentences": [
            "The Harbor City Public Library lends books, audiobooks, films and board games to anyone who holds a free library card.",
            "Residents of the city and of the three neighboring counties can apply for a card at any branch by showing a photo ID and proof of address.",
            "Children under fourteen need a parent or guardian to sign the application, and their cards carry a lower limit of fifteen items.",
            "Adult cardholders may borrow up to forty items at once, of which no more than ten may be films or video games.",
            "The standard loan period is three weeks for books and audiobooks, and one week for films, magazines and board games.",
            "Items can be renewed twice online or by phone, unless another patron has placed a hold on them.",
            "The library stopped charging overdue fines in 2022, but a card is blocked once an item is more than thirty days late.",
            "A blocked card is restored as soon as the late items are returned, with no further charge.",
            "Lost or damaged items are billed at their replacement cost plus a processing fee of five dollars.",
            "Holds can be placed on up to fifteen titles, and patrons are notified by email or text when a hold is ready.",
            "A ready hold waits on the pickup shelf for seven days before it passes to the next patron in line.",
            "The main branch on Quay Street is open from nine in the morning to eight in the evening on weekdays.",
            "On Saturdays every branch opens at ten and closes at five, and all branches are closed on Sundays in July and August.",
            "The after-hours return boxes outside each branch are emptied every morning, and items returned there are checked in the same day.",
            "Cardholders can also borrow e-books through the library app, with a limit of eight digital loans at a time.",
            "Meeting rooms at the main branch can be booked free of charge by nonprofit groups for up to three hours per week.",
            "Printing costs ten cents per black-and-white page and fifty cents per color page, paid at the self-service kiosks.",
            "Interlibrary loans from other systems in the state are free, but they usually take between one and two weeks to arrive.",
        ],
        "questions": [
            ("How many items can an adult cardholder borrow at the same time?", 3),
            ("How long can I keep a film I borrowed?", 4),
            ("Does the library charge overdue fines?", 6),
            ("What happens if I lose a borrowed book?", 8),
            ("How long does a ready hold stay on the pickup shelf?", 10),
            ("What are the weekday opening hours of the main branch?", 11),
            ("How many e-books can I borrow at once?", 14),
            ("How much does color printing cost?", 16),
            ("How long does an interlibrary loan usually take?", 17),
            ("Who needs a guardian's signature to get a library card?", 2),
        ],
    },
    {
        "title": "Stratus object storage service overview",
        "sentences": [
            "Stratus is an object storage service that keeps files, called objects, inside containers called buckets.",
            "Each bucket belongs to one region, and its name must be unique across all customers of the service.",
            "Bucket names are between three and sixty-three characters long and may contain only lowercase letters, digits and hyphens.",
            "A single object can be as large as five terabytes, but uploads larger than one hundred megabytes should use multipart upload.",
            "Multipart upload splits a file into parts of at least five megabytes that can be sent in parallel and retried independently.",
            "Every object is stored on at least three devices in separate facilities within its region.",
            "The service is designed for eleven nines of durability and guarantees ninety-nine point nine percent monthly availability.",
            "Objects can be stored in the standard class, the infrequent-access class or the archive class.",
            "The infrequent-access class costs less per gigabyte but charges a retrieval fee for every gigabyte read.",
            "Archived objects must be restored before they can be read, and a restore takes between one and twelve hours.",
            "Lifecycle rules can move objects to a cheaper class after a chosen number of days, or delete them automatically.",
            "Versioning is off by default; when it is turned on, overwriting an object keeps the previous version.",
            "Access is controlled with bucket policies and access keys, and every bucket is private when it is created.",
            "Presigned URLs grant temporary access to a single object for up to seven days without sharing credentials.",
            "Data is encrypted at rest with keys managed by the service, or with customer-managed keys if the bucket is configured for them.",
            "Requests are billed per thousand operations, and data transfer into the service is free.",
            "Data transferred out to the internet is billed per gigabyte after the first one hundred gigabytes each month.",
            "The service API is compatible with the most common S3 client libraries, so existing tools usually work after changing the endpoint.",
        ],
        "questions": [
            ("What characters are allowed in a bucket name?", 2),
            ("What is the largest object I can store?", 3),
            ("When should I use multipart upload?", 3),
            ("How long does it take to restore an archived object?", 9),
            ("Is versioning enabled by default?", 11),
            ("How long can a presigned URL stay valid?", 13),
            ("Is uploading data into the service billed?", 15),
            ("How many copies of each object are kept?", 5),
            ("What availability does the service guarantee?", 6),
        ],
    },
    {
        "title": "Travel and expense policy at Larkfield Engineering",
        "sentences": [
            "Larkfield Engineering reimburses reasonable business travel expenses that are approved in advance by an employee's manager.",
            "Trips within the home country need manager approval, while international trips also need approval from the department director.",
            "Employees should book flights through the company travel portal at least fourteen days before departure whenever possible.",
            "Economy class is the default for all flights, but business class is allowed on single flights longer than eight hours.",
            "Hotel costs are reimbursed up to a nightly limit that depends on the city and is listed on the travel portal.",
            "The daily meal allowance is sixty-five dollars for domestic travel and eighty-five dollars for international travel.",
            "Alcohol is not reimbursed unless it is part of a client dinner approved by a director.",
            "Employees who drive their own car are paid a mileage rate of sixty-seven cents per mile, and parking and tolls are reimbursed separately.",
            "Taxis and ride-sharing are allowed, but rental cars should be economy or compact models unless four or more colleagues travel together.",
            "All expenses must be submitted in the expense system within thirty days after the trip ends.",
            "Every expense above twenty-five dollars needs an itemized receipt, and a credit card statement alone is not enough.",
            "Reimbursements are paid with the next regular payroll after the manager approves the report.",
            "Employees can request a travel advance for trips longer than two weeks, which is deducted from the final expense report.",
            "Costs of personal side trips, upgrades bought for comfort, and traffic fines are never reimbursed.",
            "Travel insurance is provided by the company for all approved trips, so employees do not need to buy their own.",
            "If a trip is cancelled for business reasons, non-refundable bookings are covered by the department budget.",
            "Questions about this policy should be sent to the finance team through the internal help desk.",
        ],
        "questions": [
            ("When is business class allowed?", 3),
            ("What is the daily meal allowance for international trips?", 5),
            ("What mileage rate is paid for using a personal car?", 7),
            ("How soon after a trip must expenses be submitted?", 9),
            ("Which expenses need an itemized receipt?", 10),
            ("Who must approve an international trip?", 1),
            ("Is alcohol reimbursed?", 6),
            ("Do employees need to buy their own travel insurance?", 14),
        ],
    },
    {
        "title": "Installing rooftop solar panels on a house",
        "sentences": [
            "A typical home solar system consists of panels on the roof, an inverter, a mounting system and a connection to the electrical grid.",
            "Before anything is installed, an installer checks the roof's orientation, angle, shading and structural condition.",
            "In the northern hemisphere, roofs facing south produce the most energy, while east- and west-facing roofs produce about fifteen to twenty percent less.",
            "Shade from trees, chimneys or neighboring buildings can reduce output sharply, especially when panels are wired in long strings.",
            "Microinverters or power optimizers on each panel limit the losses caused by partial shading.",
            "A roof that will need replacing within the next ten years should usually be replaced before the panels go on.",
            "Most residential systems are between four and ten kilowatts, which needs roughly twenty to forty square meters of roof space.",
            "The inverter converts the direct current produced by the panels into alternating current used by household appliances.",
            "In most places a building permit and an interconnection agreement with the utility are required before the system is switched on.",
            "The physical installation usually takes one to three days, but permits and inspections can take several weeks.",
            "Net metering lets homeowners receive credit for surplus electricity that their system sends back to the grid.",
            "A home battery stores surplus energy for the evening and can keep essential circuits running during a power cut.",
            "Modern panels typically come with a twenty-five-year performance warranty and lose around half a percent of output per year.",
            "Panels need little maintenance; rain removes most dust, but heavy dirt or bird droppings may require occasional cleaning.",
            "The payback period depends on electricity prices, incentives and sunshine, and often falls between six and twelve years.",
            "Monitoring apps show daily production, which makes it easy to notice a failed panel or inverter early.",
            "Installers should be licensed, insured and able to show references from recent local projects.",
        ],
        "questions": [
            ("Which roof direction produces the most energy in the northern hemisphere?", 2),
            ("What does the inverter do?", 7),
            ("How long does the installation itself take?", 9),
            ("What is net metering?", 10),
            ("How much output do panels lose per year?", 12),
            ("What is a typical payback period for home solar?", 14),
            ("How can partial shading losses be reduced?", 4),
            ("Should I replace an old roof before installing panels?", 5),
        ],
    },
    {
        "title": "The history of the Riverton Bridge",
        "sentences": [
            "The Riverton Bridge crosses the Alder River at its narrowest point, where a ferry had carried passengers since the early eighteen hundreds.",
            "By 1880 the ferry could no longer handle the growing traffic of farm wagons heading to the railway station on the east bank.",
            "The town council held a design competition in 1884, which was won by the young engineer Margaret Hale.",
            "Hale proposed a three-span iron truss bridge resting on two stone piers built from granite quarried nearby.",
            "Construction began in the spring of 1886 and was delayed for a year when a flood destroyed the first cofferdam.",
            "The bridge opened on the fourth of July 1889, and a toll of one cent per pedestrian was collected until 1912.",
            "In 1927 the wooden deck was replaced with reinforced concrete so that the bridge could carry motor trucks.",
            "During the great flood of 1951 the water rose to within half a meter of the deck, but the piers held.",
            "By the 1970s heavy traffic had caused serious corrosion, and engineers recommended closing the bridge to vehicles.",
            "A new highway bridge was built two kilometers downstream in 1981, and the old bridge was turned into a pedestrian and cycle crossing.",
            "Local residents formed the Friends of Riverton Bridge in 1985 to raise money for its restoration.",
            "The restoration, finished in 1993, replaced about a third of the iron members while keeping the original rivets visible.",
            "The bridge was added to the national register of historic places in 1995.",
            "Today about four thousand people cross it on an average summer day, and a farmers' market is held at its west end on Saturdays.",
            "A small museum in the former toll house displays Hale's original drawings and photographs of the construction.",
            "Every ten years the bridge is repainted in its original color, a dark green known locally as Riverton green.",
        ],
        "questions": [
            ("Who designed the Riverton Bridge?", 2),
            ("When did the bridge open?", 5),
            ("Why was construction delayed?", 4),
            ("What happened to the deck in 1927?", 6),
            ("When did the bridge become a pedestrian crossing?", 9),
            ("What is displayed in the old toll house?", 14),
            ("How much was the original toll?", 5),
        ],
    },
    {
        "title": "BrewMaster 300 coffee machine manual",
        "sentences": [
            "The BrewMaster 300 is a bean-to-cup coffee machine with a built-in grinder, a steam wand and a two-liter water tank.",
            "Before the first use, rinse the water tank, fill it with fresh cold water and run the rinse cycle twice without coffee.",
            "The grinder has twelve settings; lower numbers give a finer grind for espresso and higher numbers a coarser grind for long coffee.",
            "Only change the grind setting while the grinder is running, otherwise the burrs may be damaged.",
            "Do not put oily, caramelized or flavored beans in the hopper, because they clog the grinder.",
            "Press the cup button once for a single espresso and twice for a double, or hold it for three seconds to program a custom volume.",
            "To froth milk, purge the steam wand for two seconds, then hold the tip just below the surface of the milk.",
            "Wipe the steam wand with a damp cloth and purge it again immediately after each use to stop milk from drying inside.",
            "Empty the drip tray and the grounds container when the red tray symbol lights up, and at least once a day.",
            "The machine must be descaled when the orange descale light comes on, which is about every two months with hard water.",
            "For descaling, use only the BrewMaster descaling liquid diluted with half a liter of water, and follow the descale program that takes about twenty-five minutes.",
            "Using vinegar for descaling can damage the seals and voids the warranty.",
            "If the coffee runs too fast and tastes sour, choose a finer grind or increase the amount of coffee.",
            "If the coffee only drips out, choose a coarser grind and check that the brewing unit is clean.",
            "The brewing unit can be removed from the side door and should be rinsed under lukewarm water every week.",
            "Error E4 means the brewing unit is not inserted correctly; remove it and push it back until it clicks.",
            "The machine switches to standby after thirty minutes without use; this time can be changed in the settings menu.",
            "The warranty covers manufacturing defects for two years, provided the machine has been descaled as instructed.",
        ],
        "questions": [
            ("When should I descale the machine?", 9),
            ("Can I use vinegar to descale it?", 11),
            ("What does error E4 mean?", 15),
            ("My coffee tastes sour and runs fast. What should I change?", 12),
            ("How do I program a custom coffee volume?", 5),
            ("How often should the brewing unit be rinsed?", 14),
            ("When can I change the grind setting?", 3),
            ("How long does the warranty last?", 17),
        ],
    },
    {
        "title": "Photosynthesis",
        "sentences": [
            "Photosynthesis is the process by which plants, algae and some bacteria turn light energy into chemical energy stored in sugar.",
            "It takes place mainly in the leaves, inside small structures called chloroplasts.",
            "Chloroplasts contain chlorophyll, a green pigment that absorbs red and blue light and reflects green light.",
            "The overall reaction combines carbon dioxide from the air and water from the soil to make glucose and release oxygen.",
            "The process has two stages: the light-dependent reactions and the light-independent reactions, also called the Calvin cycle.",
            "In the light-dependent reactions, light energy splits water molecules, which releases oxygen as a by-product.",
            "The energy captured in this stage is stored temporarily in two carrier molecules, ATP and NADPH.",
            "In the Calvin cycle, the enzyme RuBisCO fixes carbon dioxide, and ATP and NADPH supply the energy to build sugars.",
            "Carbon dioxide enters the leaf through tiny pores called stomata, which also let water vapor escape.",
            "On hot, dry days many plants close their stomata to save water, which slows photosynthesis.",
            "Plants such as maize and sugarcane use a variant called C4 photosynthesis that works efficiently in heat and bright light.",
            "Cacti and other desert plants use CAM photosynthesis, opening their stomata only at night.",
            "The rate of photosynthesis depends on light intensity, carbon dioxide concentration and temperature.",
            "Almost all the oxygen in the atmosphere was produced by photosynthesis over billions of years.",
            "Photosynthesis is also the starting point of nearly every food chain on Earth.",
            "Fossil fuels such as coal and oil contain energy that was captured by photosynthesis millions of years ago.",
        ],
        "questions": [
            ("Where in the plant cell does photosynthesis happen?", 1),
            ("Why do plants look green?", 2),
            ("What gas is released during photosynthesis?", 3),
            ("What are stomata?", 8),
            ("What is CAM photosynthesis?", 11),
            ("Which factors affect the rate of photosynthesis?", 12),
            ("What does the enzyme RuBisCO do?", 7),
        ],
    },
    {
        "title": "How the TCP protocol delivers data",
        "sentences": [
            "The Transmission Control Protocol, or TCP, provides reliable, ordered delivery of a stream of bytes between two programs over an IP network.",
            "Before data is sent, the two sides establish a connection with a three-way handshake made of SYN, SYN-ACK and ACK segments.",
            "During the handshake each side chooses an initial sequence number, which is used to number every byte it sends.",
            "The receiver acknowledges data by sending back the sequence number of the next byte it expects.",
            "If an acknowledgment does not arrive before a retransmission timeout, the sender sends the data again.",
            "Three duplicate acknowledgments in a row are treated as a sign of loss and trigger a fast retransmit without waiting for the timeout.",
            "Flow control prevents a fast sender from overwhelming a slow receiver; the receiver advertises how much buffer space it has left in a window field.",
            "Congestion control protects the network itself, by limiting how much unacknowledged data the sender may have in flight.",
            "A new connection starts with slow start, in which the congestion window roughly doubles every round trip until loss occurs or a threshold is reached.",
            "Modern operating systems use congestion control algorithms such as CUBIC or BBR.",
            "Because TCP delivers bytes in order, one lost segment can delay all the data behind it, an effect called head-of-line blocking.",
            "TCP does not preserve message boundaries, so applications must add their own framing, such as length prefixes or delimiters.",
            "A connection is closed with FIN segments from each side, and the side that closes first waits in the TIME_WAIT state for a while.",
            "Nagle's algorithm combines small writes into larger segments, which saves bandwidth but can add latency to interactive traffic.",
            "Latency-sensitive programs often disable Nagle's algorithm with the TCP_NODELAY socket option.",
            "QUIC, the transport under HTTP/3, offers similar reliability over UDP while avoiding head-of-line blocking between streams.",
        ],
        "questions": [
            ("What are the three steps of the TCP handshake?", 1),
            ("What triggers a fast retransmit?", 5),
            ("What is the difference between flow control and congestion control?", 6),
            ("What is head-of-line blocking?", 10),
            ("Why would a program set TCP_NODELAY?", 14),
            ("What happens during slow start?", 8),
            ("Does TCP preserve message boundaries?", 11),
        ],
    },
    {
        "title": "Greenway bike-share system",
        "sentences": [
            "Greenway is the city's public bike-share system, with about two thousand bikes at three hundred docking stations.",
            "Riders can unlock a bike with the Greenway app, a transit card linked to an account, or a single-ride code bought at a station kiosk.",
            "A single ride costs two dollars and fifty cents for the first thirty minutes, and each extra fifteen minutes costs one dollar.",
            "An annual membership costs ninety dollars and includes unlimited rides of up to forty-five minutes each.",
            "About a third of the fleet consists of electric-assist bikes, which cost an extra fifteen cents per minute for all riders.",
            "Bikes must be returned to a docking station; the ride ends when the dock's light turns green.",
            "If a station is full, the app shows the nearest station with free docks and adds fifteen free minutes to the ride.",
            "Riders must be at least sixteen years old, and helmets are recommended but not required by city law.",
            "Stations are rebalanced by trucks overnight and during rush hours, so popular downtown stations rarely stay empty for long.",
            "The system runs all year, but electric bikes are taken off the street when snow or ice is forecast.",
            "A bike that is not returned within twenty-four hours is considered lost, and the account is charged a fee of twelve hundred dollars.",
            "Damaged bikes can be reported by pressing the wrench button on the dock before returning them.",
            "Low-income residents can join a discounted plan that costs five dollars a month.",
            "In its first five years the system recorded more than eleven million rides.",
            "Data from the system helped the city decide where to build new protected bike lanes.",
        ],
        "questions": [
            ("How much does a single thirty-minute ride cost?", 2),
            ("What does an annual membership include?", 3),
            ("What should I do if the station is full?", 6),
            ("How old must riders be?", 7),
            ("What happens if a bike is not returned within a day?", 10),
            ("How do I report a damaged bike?", 11),
            ("Is there a discounted plan?", 12),
        ],
    },
    {
        "title": "Baking sourdough bread at home",
        "sentences": [
            "Sourdough bread is leavened by a starter, a fermented mixture of flour and water that contains wild yeast and lactic acid bacteria.",
            "A new starter can be made by mixing equal weights of flour and water and feeding it daily for one to two weeks.",
            "A healthy starter doubles in size within four to eight hours after feeding and smells pleasantly sour.",
            "A common basic recipe uses five hundred grams of bread flour, three hundred and fifty grams of water, one hundred grams of active starter and ten grams of salt.",
            "Many bakers first mix only the flour and water and let them rest for thirty to sixty minutes, a step called autolyse.",
            "During bulk fermentation, the dough rises at room temperature for four to six hours.",
            "Instead of kneading, the dough is strengthened with several sets of stretches and folds during the first two hours.",
            "Bulk fermentation is finished when the dough has grown by about half, feels airy and shows bubbles at the sides.",
            "The dough is then shaped into a tight round or oval loaf and placed in a floured basket.",
            "A long cold proof in the refrigerator, usually eight to sixteen hours, develops flavor and makes the dough easier to score.",
            "The bread is often baked in a preheated cast-iron pot at about two hundred and fifty degrees Celsius.",
            "The lid is kept on for the first twenty minutes to trap steam, which lets the loaf expand before the crust sets.",
            "After the lid is removed, the bread bakes for another twenty to twenty-five minutes until the crust is deep brown.",
            "A dense, gummy crumb usually means the dough was underfermented or the bread was cut before it had cooled.",
            "The loaf should cool on a rack for at least an hour before slicing.",
            "An unused starter can be kept in the refrigerator and fed once a week.",
        ],
        "questions": [
            ("How long does a new starter take to become active?", 1),
            ("What is autolyse?", 4),
            ("How do I know bulk fermentation is finished?", 7),
            ("Why is the lid kept on at the start of baking?", 11),
            ("Why is my sourdough crumb dense and gummy?", 13),
            ("How often should a refrigerated starter be fed?", 15),
            ("How long should the loaf cool before slicing?", 14),
        ],
    },
    {
        "title": "Course syllabus: Introduction to Data Structures (CS 210)",
        "sentences": [
            "CS 210 introduces the design and analysis of fundamental data structures and the algorithms that use them.",
            "The prerequisite is CS 110 or an equivalent introductory programming course with a grade of C or better.",
            "Lectures are held on Tuesdays and Thursdays from ten to eleven-fifteen, and each student also attends one weekly lab section.",
            "Topics include arrays, linked lists, stacks, queues, hash tables, binary search trees, heaps and graphs.",
            "Students learn to analyze running time with big-O notation and to choose a data structure suited to a problem.",
            "All programming assignments are written in Java and submitted through the course's online autograder.",
            "There are eight programming assignments, which together count for forty percent of the final grade.",
            "The midterm exam counts for twenty percent, the final exam for thirty percent, and lab participation for ten percent.",
            "Each student has four late days for the whole semester, which can be used on any assignments without penalty.",
            "After the late days are used up, late work loses ten percent per day and is not accepted after three days.",
            "Students may discuss ideas with classmates, but all code they submit must be written by themselves.",
            "Code is checked for similarity by software, and suspected copying is reported to the academic integrity office.",
            "Office hours are held every weekday afternoon, and questions can also be asked on the course discussion forum.",
            "The recommended textbook is optional; lecture notes and recordings are posted on the course website.",
            "Students who need exam accommodations should contact the disability services office in the first two weeks of term.",
        ],
        "questions": [
            ("What is the prerequisite for CS 210?", 1),
            ("Which programming language is used for assignments?", 5),
            ("How much is the final exam worth?", 7),
            ("How many late days does each student get?", 8),
            ("What happens to late work after the late days are used?", 9),
            ("Can students work together on code?", 10),
            ("When are the lectures held?", 2),
        ],
    },
    {
        "title": "Vaccination and how the immune system learns",
        "sentences": [
            "Vaccines train the immune system to recognize a pathogen without the person having to get sick first.",
            "Most vaccines contain a harmless piece or version of the pathogen, called an antigen, or instructions for making one.",
            "When the immune system meets the antigen, B cells produce antibodies that bind to it.",
            "T cells help coordinate the response and can destroy cells that have been infected.",
            "After the first response, some B and T cells become long-lived memory cells.",
            "If the real pathogen arrives later, memory cells allow a faster and stronger response that often prevents illness.",
            "Some vaccines need several doses, because the immune memory builds up with each exposure.",
            "Booster doses are given when protection fades over time or when the pathogen changes.",
            "Common side effects such as a sore arm, tiredness or mild fever show that the immune system is responding, and usually pass within a day or two.",
            "Vaccines are tested in clinical trials with thousands of volunteers before they are approved.",
            "Safety is still monitored after approval, because very rare side effects only show up when millions of people are vaccinated.",
            "When enough people in a community are immune, the spread of a disease slows, which also protects people who cannot be vaccinated.",
            "This effect is called community or herd immunity, and the share of people needed depends on how contagious the disease is.",
            "Smallpox was declared eradicated in 1980 after a worldwide vaccination campaign.",
        ],
        "questions": [
            ("What is an antigen?", 1),
            ("What do memory cells do?", 5),
            ("Why are booster doses given?", 7),
            ("What is herd immunity?", 11),
            ("When was smallpox declared eradicated?", 13),
            ("Why do some vaccines need several doses?", 6),
        ],
    },
    {
        "title": "Nimbus CLI 3.2 release notes",
        "sentences": [
            "Nimbus CLI 3.2 is a minor release that adds parallel deployments, improves error messages and fixes several bugs.",
            "The new deploy flag --parallel N deploys up to N services at the same time; the default remains one.",
            "Deployments now stop at the first failed health check unless --keep-going is passed.",
            "The config file format is unchanged, but the key timeout_seconds is now deprecated in favor of timeout, which accepts units such as 30s or 5m.",
            "Configs that still use timeout_seconds keep working and print a deprecation warning; the old key will be removed in version 4.0.",
            "Error messages for invalid config files now include the file name, line number and a suggestion when a key looks misspelled.",
            "The logs command gained a --since option that accepts durations like 10m or timestamps in ISO 8601 format.",
            "Shell completion scripts for bash, zsh and fish can be generated with nimbus completion followed by the shell name.",
            "A bug that made nimbus status report stopped services as healthy has been fixed.",
            "Another fix prevents the CLI from hanging when the network drops during an upload; uploads now time out after two minutes without progress.",
            "The minimum supported Python version for the plugin system is now 3.9.",
            "Windows builds are now signed, so the security warning on first launch no longer appears.",
            "Telemetry remains opt-in, and the new command nimbus telemetry status shows the current setting.",
            "To upgrade, run nimbus self-update, or download the new binary from the releases page.",
            "Users upgrading from 2.x should read the 3.0 migration guide first, because the plugin API changed in that release.",
        ],
        "questions": [
            ("How do I deploy several services at once?", 1),
            ("What replaces the timeout_seconds key?", 3),
            ("When will timeout_seconds stop working?", 4),
            ("How can I generate shell completion scripts?", 7),
            ("What bug in nimbus status was fixed?", 8),
            ("How do I upgrade the CLI?", 13),
            ("What does the new --since option accept?", 6),
        ],
    },
    {
        "title": "Visiting the Cedar Hollow Wildlife Reserve",
        "sentences": [
            "Cedar Hollow Wildlife Reserve protects four thousand hectares of wetland, meadow and old-growth forest along the Pell River.",
            "The reserve is open from sunrise to sunset every day, and entry is free, but parking costs eight dollars per car.",
            "The visitor center near the main entrance has maps, restrooms, a small exhibit and rangers who can answer questions.",
            "Dogs are allowed only on the Lakeshore Loop and must be kept on a leash no longer than two meters.",
            "Visitors must stay on marked trails, because the meadows are nesting grounds for ground-nesting birds from April to July.",
            "The Heron Boardwalk is a flat, one-kilometer trail suitable for wheelchairs and strollers.",
            "The Ridge Trail is eleven kilometers long with steep sections and takes most hikers four to five hours.",
            "Early morning is the best time to see deer, beavers and many of the more than two hundred bird species recorded in the reserve.",
            "Feeding wildlife is forbidden, as it makes animals dependent on people and can spread disease.",
            "Fishing is allowed from the river bank with a state fishing license, but not from the boardwalks.",
            "Camping is permitted only at the twelve reservable sites of the Pine Flat campground.",
            "Campfires are allowed only in the metal fire rings and are banned completely when the fire danger is high.",
            "Drones may not be flown anywhere in the reserve without a research permit.",
            "Guided bird walks leave the visitor center at seven on Saturday mornings from May to September.",
            "Ticks are common in tall grass, so long trousers and a tick check after the visit are recommended.",
        ],
        "questions": [
            ("Is there an entry fee for the reserve?", 1),
            ("Where are dogs allowed?", 3),
            ("Which trail is accessible by wheelchair?", 5),
            ("How long does the Ridge Trail take?", 6),
            ("Can I fly a drone in the reserve?", 12),
            ("When are the guided bird walks?", 13),
            ("Where can I camp?", 10),
        ],
    },
    {
        "title": "Compound interest and saving for retirement",
        "sentences": [
            "Compound interest means that interest is earned not only on the original deposit but also on the interest already added.",
            "Over long periods this makes savings grow much faster than with simple interest, which is paid only on the original amount.",
            "For example, one thousand dollars earning five percent a year grows to about sixteen hundred and thirty dollars after ten years.",
            "After thirty years at the same rate, the same deposit grows to more than four thousand three hundred dollars.",
            "The rule of 72 gives a quick estimate: dividing 72 by the annual interest rate gives roughly the number of years needed to double the money.",
            "Starting early matters more than the size of early contributions, because the first deposits have the longest time to compound.",
            "Fees work like negative compound interest, so a one percent annual fee can reduce the final balance by a large share over decades.",
            "Inflation reduces the purchasing power of savings, so the real return is roughly the interest rate minus the inflation rate.",
            "Retirement accounts with tax advantages let the money compound without being reduced by yearly taxes on the gains.",
            "Many employers match part of their workers' retirement contributions, which is effectively an immediate return on that money.",
            "Diversified index funds spread money over many companies and usually have lower fees than actively managed funds.",
            "Stocks have historically returned more than bonds over long periods, but their value can fall sharply in some years.",
            "For this reason, savers often move part of their money into bonds as they get closer to retirement.",
            "Automatic monthly contributions make saving a habit and reduce the temptation to time the market.",
        ],
        "questions": [
            ("What is compound interest?", 0),
            ("What is the rule of 72?", 4),
            ("Why does starting early matter?", 5),
            ("How do fees affect long-term savings?", 6),
            ("What is the real return on savings?", 7),
            ("Why do savers move money into bonds near retirement?", 12),
        ],
    },
    {
        "title": "Municipal curbside recycling program",
        "sentences": [
            "The city's curbside program collects recycling every other week on the same day as regular trash.",
            "Each household receives a blue cart for recycling and a green cart for food and yard waste.",
            "Paper, cardboard, metal cans, glass bottles and jars, and plastic bottles and tubs can go in the blue cart.",
            "Plastic bags and film must never go in the cart, because they wrap around the sorting machines; they can be returned to grocery stores.",
            "Containers should be empty and quickly rinsed, but they do not need to be perfectly clean.",
            "Cardboard boxes should be flattened so that more fits in the cart and the lid can close.",
            "Greasy pizza boxes go in the green cart, because food-soiled paper cannot be recycled.",
            "Batteries, electronics and paint are hazardous and must be brought to the drop-off center on Mill Road.",
            "Carts must be at the curb by six in the morning on collection day, with the handles facing the house.",
            "When collection falls on a public holiday, it moves to the following day for the rest of that week.",
            "A cart that contains a lot of trash will be tagged and left unemptied until the contents are fixed.",
            "Residents can order a larger cart or a second cart for a one-time fee of twenty-five dollars.",
            "The city publishes a free app that shows the collection calendar and answers whether an item is recyclable.",
            "Recyclables are sorted at a regional facility and sold to mills that turn them into new products.",
        ],
        "questions": [
            ("How often is recycling collected?", 0),
            ("Can plastic bags go in the blue cart?", 3),
            ("Where do greasy pizza boxes go?", 6),
            ("Where should I take old batteries?", 7),
            ("What time must carts be at the curb?", 8),
            ("What happens to collection during a holiday week?", 9),
        ],
    },
]

# ---------------------------------------------------------------------------------------------
# Short questions (5-20 words)

SHORT_QUESTIONS = [
    "Why is the sky blue during the day?",
    "How does a refrigerator keep food cold?",
    "What causes the seasons on Earth?",
    "Why do cats purr?",
    "How long should I boil an egg for a soft yolk?",
    "What is the difference between weather and climate?",
    "How do airplanes stay in the air?",
    "Why does bread go stale?",
    "What is a good way to remember people's names?",
    "How many hours of sleep does an adult need?",
    "What is the tallest mountain in the world?",
    "Why do onions make you cry?",
    "How do noise-cancelling headphones work?",
    "What does a project manager actually do all day?",
    "Is it better to rent or buy a home?",
    "What is the fastest land animal?",
    "How do vaccines protect people from disease?",
    "Why do leaves change color in autumn?",
    "What is inflation, in simple terms?",
    "How do I get rid of hiccups?",
    "What should I pack for a three-day hiking trip?",
    "Why is the ocean salty?",
    "How does a credit score work?",
    "What is the best way to learn a new language as an adult?",
    "Why do we have leap years?",
    "How do solar panels make electricity?",
    "What are the main causes of climate change?",
    "How can I make my houseplants grow better?",
    "What is the difference between a virus and a bacterium?",
    "Why does ice float on water?",
    "How do I politely decline a meeting invitation?",
    "What is machine learning, explained for a beginner?",
    "How does GPS know where I am?",
    "What is the healthiest way to cook vegetables?",
    "Why do we yawn?",
    "How do bees make honey?",
    "What is the point of a cover letter?",
    "How often should I change my car's oil?",
    "Why does the moon change shape during the month?",
    "What is a black hole?",
    "How do I clean a cast-iron pan?",
    "What are some good habits for working from home?",
    "Why do some people get seasick?",
    "How does a microwave oven heat food?",
    "What is the difference between baking soda and baking powder?",
    "How do I start running if I have never run before?",
    "What makes a good password?",
    "Why is exercise good for mental health?",
    "How do tides work?",
    "What is a mortgage?",
    "How can I reduce my electricity bill in winter?",
    "What is the water cycle?",
    "Why do dogs wag their tails?",
    "How does the stock market work?",
    "What should I do if I feel overwhelmed at work?",
    "How is glass made?",
    "What is the difference between an alligator and a crocodile?",
    "Why do we dream?",
    "How do I write a good thank-you note?",
    "What is the speed of light?",
    "How are rainbows formed?",
    "What is a healthy breakfast that takes five minutes?",
    "Why do my ears pop on an airplane?",
    "How do I keep cut flowers fresh longer?",
    "What is renewable energy?",
    "How does caffeine affect the body?",
    "What is the best way to store fresh herbs?",
    "Why do stars twinkle?",
    "How do I prepare for a job interview?",
    "What is the difference between a hurricane and a tornado?",
    "How do electric cars work?",
    "Why should I back up my computer?",
    "What is a good first programming language to learn?",
    "How do I stop procrastinating?",
    "What causes thunder?",
    "How does recycling paper help the environment?",
    "What are some tips for a long car trip with children?",
    "Why is it important to drink enough water?",
    "How does a bill become a law?",
    "What is the difference between a lake and a pond?",
    "How do I ask my manager for a raise?",
    "Why do we get goosebumps?",
    "How do earthquakes happen?",
    "What is cloud computing?",
    "How do I make my resume stand out?",
    "What is the history of the Olympic Games, briefly?",
    "How do birds know where to migrate?",
    "What is a budget and why should I have one?",
    "Why do apples turn brown after being cut?",
    "How do I calm down before giving a speech?",
    "What does a dentist check during a routine visit?",
    "How do I choose a good watermelon at the store?",
    "What is the difference between empathy and sympathy?",
    "How does a compass work?",
    "Why do volcanoes erupt?",
    "How can I improve my handwriting?",
    "What is an index fund?",
    "Why do cats land on their feet?",
    "How do I take care of a new puppy?",
    "What is the greenhouse effect?",
    "How do I remove a coffee stain from a shirt?",
    "What is the difference between RAM and storage?",
    "How do I tell if an egg is still fresh?",
    "Why are some people left-handed?",
    "How long does it take light from the Sun to reach Earth?",
    "What is a good way to start a conversation with a stranger?",
    "How do plants know which way is up?",
    "What is the role of the liver?",
    "How can I sleep better at night?",
    "Why does metal feel colder than wood at the same temperature?",
    "What is a haiku?",
    "How do I split a restaurant bill fairly?",
    "Why is biodiversity important?",
    "How do contact lenses correct vision?",
    "What are the benefits of reading every day?",
    "How do I make a simple tomato sauce?",
    "What is the difference between a CV and a resume?",
    "How do I fix a squeaky door hinge?",
    "Why do we need sleep at all?",
]

DIFF_PAIRS = [
    ("a list", "a tuple in Python"), ("TCP", "UDP"), ("RAM", "ROM"), ("a loan", "a line of credit"),
    ("a virus", "a worm in computer security"), ("HTTP", "HTTPS"), ("a simile", "a metaphor"),
    ("speed", "velocity"), ("mass", "weight"), ("a stock", "a bond"), ("git merge", "git rebase"),
    ("latitude", "longitude"), ("a democracy", "a republic"), ("an epidemic", "a pandemic"),
    ("affect", "effect"), ("a crocodile", "an alligator"), ("a process", "a thread"),
    ("SQL", "NoSQL databases"), ("baking", "roasting"), ("a comet", "an asteroid"),
    ("stress", "anxiety"), ("a debit card", "a credit card"), ("AC", "DC electricity"),
    ("a hypothesis", "a theory"), ("an LED", "an incandescent bulb"), ("frogs", "toads"),
    ("jam", "jelly"), ("a sprint", "a marathon in running training"), ("an interpreter", "a compiler"),
    ("a router", "a modem"),
]

HOW_TASKS = [
    "change a flat bicycle tire", "set up a monthly budget", "remove rust from garden tools",
    "write a good commit message", "tie a bowline knot", "make cold brew coffee at home",
    "clean a laptop keyboard safely", "start a vegetable garden on a balcony", "back up photos from my phone",
    "learn to touch type", "negotiate the price of a used car", "brew green tea without bitterness",
    "keep a sourdough starter alive", "prepare for a half marathon", "reduce screen time in the evening",
    "organize a small closet", "unclog a bathroom sink without chemicals", "write a short speech for a wedding",
    "train a dog to come when called", "make friends in a new city", "study for an exam in one week",
    "choose a good pair of running shoes", "fold a fitted sheet", "read a nutrition label",
    "set up two-factor authentication", "save money on groceries", "fall asleep faster",
    "paint a room without making a mess", "take better photos with a phone", "keep houseplants alive while traveling",
]

CONCEPTS = [
    "opportunity cost", "photosynthesis", "a blockchain", "the placebo effect", "an API", "supply and demand",
    "entropy", "a neural network", "compound interest", "the water table", "a recession", "natural selection",
    "a firewall", "the Doppler effect", "a hash function", "herd immunity", "plate tectonics", "a sonnet",
    "a vaccine", "the scientific method", "a Turing machine", "dark matter", "an operating system",
    "a carbon footprint", "cognitive bias", "a regular expression", "an ecosystem", "a mutual fund",
    "the greenhouse effect", "a fiscal year", "a microservice", "the immune system", "an algorithm",
    "the Pythagorean theorem", "a cache", "deflation", "a gene", "an exoplanet", "a load balancer", "irony",
]

TIP_TOPICS = [
    "staying focused while studying", "cooking rice on the stove", "running a productive meeting",
    "writing clear emails", "saving for a vacation", "keeping a journal", "learning guitar chords",
    "reducing food waste", "packing a suitcase", "staying warm while camping", "reviewing someone's code",
    "giving constructive feedback", "taking notes in lectures", "keeping a small kitchen tidy",
    "staying safe on public Wi-Fi", "drinking more water", "planning a birthday party on a budget",
    "improving posture at a desk", "memorizing vocabulary", "caring for a cactus",
]

# ---------------------------------------------------------------------------------------------
# Instructions

INSTRUCTION_TEMPLATES = [
    "Write a short {tone} email to {who} about {topic}.",
    "Draft a {tone} message to {who} explaining {topic}. Keep it under 120 words.",
    "Write three bullet points I could use when talking to {who} about {topic}.",
    "Rewrite this sentence to sound more {tone}: \"{sentence}\"",
    "Give me a step-by-step plan for {activity}, in at most six steps.",
    "Suggest five names for {thing}.",
    "Write a four-line poem about {subject}.",
    "Create a packing checklist for {trip}.",
    "Explain {concept} to a ten-year-old in one short paragraph.",
    "Write a product description of about 80 words for {product}.",
    "Turn these notes into a clear paragraph: {notes}",
    "List the pros and cons of {choice}.",
    "Write a polite reply declining {invitation}.",
    "Make a one-day itinerary for a visitor to {place} who likes {interest}.",
    "Summarize the main arguments for and against {debate} in a few sentences.",
    "Write a short story opening, two or three sentences, set in {setting}.",
    "Translate this into simple French: \"{sentence}\"",
    "Propose an agenda for a 30-minute meeting about {topic}.",
    "Write a tweet announcing {announcement}.",
    "Create a weekly meal plan outline for {diet}.",
]

SLOTS = {
    "tone": ["friendly", "formal", "apologetic", "enthusiastic", "concise", "warm", "professional", "polite"],
    "who": ["my landlord", "a new colleague", "the hiring manager", "my team", "a customer", "my professor",
            "the building manager", "a supplier", "our volunteers", "my neighbor"],
    "topic": ["a delayed delivery", "next week's deadline", "a change in office hours", "a billing mistake",
              "the quarterly results", "a broken heater", "the new parking rules", "a missed meeting",
              "a team offsite", "the holiday schedule", "a software outage last night", "a budget cut"],
    "sentence": ["We can't do that because of the rules.", "Send me the report now.",
                 "The meeting was moved again, sorry.", "Your order is late because of the weather.",
                 "I think your idea will not work.", "Please stop parking in my spot.",
                 "The library will close early on Friday.", "Thank you for your help yesterday."],
    "activity": ["learning to swim as an adult", "moving to a new apartment", "training for a 5K run",
                 "starting a small online shop", "organizing a neighborhood cleanup", "learning basic Spanish",
                 "preparing a garden for winter", "switching careers into data analysis",
                 "building an emergency fund", "planning a family reunion"],
    "thing": ["a bakery that sells only bread", "a cat with one white paw", "a hiking club",
              "a podcast about personal finance", "a note-taking app", "a community garden",
              "a small coffee roaster", "a board game about trains", "a cleaning robot", "a book club"],
    "subject": ["the first snow of winter", "a quiet train station at night", "a cup of morning coffee",
                "the ocean at dawn", "an old bicycle", "a city after rain", "autumn leaves",
                "a lighthouse", "moving to a new town", "a library at closing time"],
    "trip": ["a weekend of camping in the mountains", "a business trip to a cold city",
             "a beach holiday with two small children", "a week-long cycling tour",
             "a ski trip", "a music festival", "a long-haul flight"],
    "concept": ["how the internet works", "why the moon has phases", "what electricity is",
                "how money works", "why we recycle", "how airplanes fly", "what DNA is", "how rain forms"],
    "product": ["a stainless steel water bottle", "noise-cancelling headphones", "a foldable desk",
                "a hand-made ceramic mug", "a rechargeable bike light", "a kids' science kit",
                "a cast-iron skillet", "a smart thermostat"],
    "notes": ["meeting moved to Thursday; budget approved; need two more volunteers; Sam leads design",
              "server down 2 hours; cause was expired certificate; renewed; add monitoring",
              "client wants earlier launch; risky; need QA time; propose phased release",
              "trip cost 1200; hotel cheaper than planned; flights delayed; reimbursement pending",
              "new hire starts Monday; laptop not ready; desk on 3rd floor; buddy is Priya"],
    "choice": ["working from home full time", "buying an electric car", "learning to code at thirty",
               "living without a car in a city", "using a standing desk", "adopting a second cat",
               "taking a gap year", "moving to a smaller apartment"],
    "invitation": ["a wedding invitation because of a work trip", "a job offer", "a speaking invitation",
                   "a dinner party next Saturday", "a request to join a committee"],
    "place": ["Lisbon", "Kyoto", "Chicago", "Edinburgh", "Vancouver", "Barcelona", "Melbourne", "Prague"],
    "interest": ["food markets", "museums", "architecture", "walking in parks", "street art",
                 "local history", "coffee shops"],
    "debate": ["a four-day work week", "banning cars from city centers", "school uniforms",
               "remote work", "homework for young children", "nuclear power", "universal basic income"],
    "setting": ["a lighthouse during a storm", "a space station orbiting Mars", "a busy night market",
                "a small bakery at 4 a.m.", "an abandoned amusement park", "a train crossing a desert"],
    "announcement": ["the opening of a new bakery", "a free coding workshop", "a charity run",
                     "our app's dark mode", "extended library hours", "a community concert"],
    "diet": ["a vegetarian student on a budget", "a family of four", "someone training for a marathon",
             "a person who cannot cook much", "a busy nurse on night shifts"],
}

# ---------------------------------------------------------------------------------------------
# Code

CODE_SNIPPETS = [
    ("python", "def average(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)"),
    ("python", "def find_duplicates(items):\n    seen = set()\n    dups = []\n    for item in items:\n        if item in seen:\n            dups.append(item)\n        seen.add(item)\n    return dups"),
    ("python", "import json\n\ndef load_config(path):\n    with open(path) as f:\n        data = json.load(f)\n    return data.get('settings', {})"),
    ("python", "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)"),
    ("python", "def append_item(item, items=[]):\n    items.append(item)\n    return items"),
    ("javascript", "function debounce(fn, ms) {\n  let t;\n  return (...args) => {\n    clearTimeout(t);\n    t = setTimeout(() => fn(...args), ms);\n  };\n}"),
    ("javascript", "async function getUser(id) {\n  const res = await fetch(`/api/users/${id}`);\n  return res.json();\n}"),
    ("javascript", "for (var i = 0; i < 3; i++) {\n  setTimeout(() => console.log(i), 100);\n}"),
    ("rust", "fn largest(v: &[i32]) -> i32 {\n    let mut max = v[0];\n    for &x in v {\n        if x > max {\n            max = x;\n        }\n    }\n    max\n}"),
    ("rust", "use std::collections::HashMap;\n\nfn word_count(text: &str) -> HashMap<&str, usize> {\n    let mut m = HashMap::new();\n    for w in text.split_whitespace() {\n        *m.entry(w).or_insert(0) += 1;\n    }\n    m\n}"),
    ("sql", "SELECT customer_id, COUNT(*) AS orders\nFROM orders\nWHERE created_at >= '2024-01-01'\nGROUP BY customer_id\nHAVING COUNT(*) > 5\nORDER BY orders DESC;"),
    ("sql", "SELECT e.name, d.name\nFROM employees e\nLEFT JOIN departments d ON e.department_id = d.id\nWHERE d.name IS NULL;"),
    ("bash", "for f in *.log; do\n  gzip \"$f\"\ndone"),
    ("bash", "#!/bin/bash\nset -e\ncount=$(wc -l < data.csv)\necho \"rows: $((count - 1))\""),
    ("go", "func reverse(s string) string {\n\tr := []rune(s)\n\tfor i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {\n\t\tr[i], r[j] = r[j], r[i]\n\t}\n\treturn string(r)\n}"),
    ("c", "int sum(int *a, int n) {\n    int s = 0;\n    for (int i = 0; i <= n; i++) {\n        s += a[i];\n    }\n    return s;\n}"),
    ("java", "public static boolean isPalindrome(String s) {\n    int i = 0, j = s.length() - 1;\n    while (i < j) {\n        if (s.charAt(i++) != s.charAt(j--)) return false;\n    }\n    return true;\n}"),
    ("python", "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n\n    def pop(self):\n        return self.items.pop()"),
]

CODE_QUESTIONS = [
    "What does this {lang} code do?\n\n```{lang}\n{code}\n```",
    "Is there a bug in this {lang} code? If so, how would you fix it?\n\n```{lang}\n{code}\n```",
    "Explain this {lang} snippet line by line.\n\n```{lang}\n{code}\n```",
    "How could I make this {lang} code faster or cleaner?\n\n```{lang}\n{code}\n```",
    "Write two unit tests for the following {lang} code.\n\n```{lang}\n{code}\n```",
    "What happens with an empty input here?\n\n```{lang}\n{code}\n```",
    "```{lang}\n{code}\n```\n\nAdd comments to this code and describe its time complexity.",
    "```{lang}\n{code}\n```\n\nCan you rewrite this in a more idiomatic style?",
]

CODE_TASKS = [
    "checks whether a string is a valid IPv4 address", "merges two sorted lists into one sorted list",
    "counts the vowels in a string", "removes duplicate lines from a text file",
    "converts a temperature from Celsius to Fahrenheit", "returns the n-th prime number",
    "flattens a nested list of integers", "parses a CSV line that may contain quoted commas",
    "computes the median of a list of numbers", "checks if two words are anagrams",
    "reads a file and prints the ten most common words", "validates an email address roughly",
    "rotates an array to the right by k steps", "returns the longest common prefix of a list of strings",
    "converts a Roman numeral to an integer", "groups a list of records by a key",
    "retries a function call up to three times with a delay", "computes a SHA-256 hash of a file",
    "generates a random password of a given length", "finds the first non-repeating character in a string",
    "implements binary search on a sorted array", "formats a number of seconds as HH:MM:SS",
    "chunks a list into pieces of size n", "checks if parentheses in a string are balanced",
]

CODE_LANGS = ["Python", "JavaScript", "Rust", "Go", "Java", "TypeScript", "C", "Bash"]

CODE_CONCEPT_QS = [
    "What is the difference between a process and a thread?",
    "When should I use a hash map instead of a list?",
    "What does 'async/await' do in JavaScript?",
    "Why are global variables considered bad practice?",
    "What is a race condition, with a small example?",
    "How does garbage collection work in Java?",
    "What is the borrow checker in Rust?",
    "Explain SQL indexes and when they help.",
    "What is dependency injection?",
    "How does git rebase differ from git merge?",
    "What is the difference between unit tests and integration tests?",
    "What is a memory leak and how do I find one?",
    "What are Python decorators used for?",
    "What does REST mean for a web API?",
    "How do I avoid SQL injection?",
    "What is Big-O notation?",
]

# ---------------------------------------------------------------------------------------------
# Known answers (for a quality check; a small instruction-tuned model can answer these)

KNOWN = [
    # Kept only questions that the F16 variant answers correctly at temperature 0 (checked with
    # scripts/llama-server), so a miss points at the configuration, not at the model's limits.
    # A response is correct when any "accept" spelling occurs in it as a whole word (any case).
    ("What is the capital of France? Answer with one word.", "Paris", []),
    ("What is the capital of Japan? Answer with one word.", "Tokyo", []),
    ("What is the capital of Italy? Answer with one word.", "Rome", []),
    ("What is the capital of Germany? Answer with one word.", "Berlin", []),
    ("What is the capital of Spain? Answer with one word.", "Madrid", []),
    ("What is the capital of England? Answer with one word.", "London", []),
    ("What is the capital of Russia? Answer with one word.", "Moscow", []),
    ("What is the capital of China? Answer with one word.", "Beijing", ["Peking"]),
    ("What is the capital of Egypt? Answer with one word.", "Cairo", []),
    ("What is the capital of Greece? Answer with one word.", "Athens", []),
    ("What is the capital of Portugal? Answer with one word.", "Lisbon", []),
    ("What is the capital of Ireland? Answer with one word.", "Dublin", []),
    ("What is the capital of Austria? Answer with one word.", "Vienna", []),
    ("What is the capital of Norway? Answer with one word.", "Oslo", []),
    ("What is the capital of Sweden? Answer with one word.", "Stockholm", []),
    ("What is the capital of Canada? Answer with one word.", "Ottawa", []),
    ("What is the capital of Australia? Answer with one word.", "Canberra", []),
    ("What is the capital of the United Kingdom? Answer with one word.", "London", []),
    ("In which country is the Eiffel Tower?", "France", []),
    ("In which country are the pyramids of Giza?", "Egypt", []),
    ("In which country is the Colosseum?", "Italy", []),
    ("What is 1 + 1? Answer with just the number.", "2", ["two"]),
    ("What is 2 + 2? Answer with just the number.", "4", ["four"]),
    ("What is 3 + 5? Answer with just the number.", "8", ["eight"]),
    ("What is 4 + 4? Answer with just the number.", "8", ["eight"]),
    ("What is 7 + 2? Answer with just the number.", "9", ["nine"]),
    ("What is 3 x 3? Answer with just the number.", "9", ["nine"]),
    ("What is 5 x 2? Answer with just the number.", "10", ["ten"]),
    ("What is 6 + 6? Answer with just the number.", "12", ["twelve"]),
    ("What is 100 + 100? Answer with just the number.", "200", []),
    ("How many days are there in a week?", "7", ["seven"]),
    ("How many months are there in a year?", "12", ["twelve"]),
    ("How many legs does a dog have?", "4", ["four"]),
    ("How many sides does a triangle have?", "3", ["three"]),
    ("What color is the sky on a clear sunny day? Answer with one word.", "blue", []),
    ("What color is a ripe tomato? Answer with one word.", "red", []),
    ("What is the opposite of hot? Answer with one word.", "cold", []),
    ("What is the opposite of up? Answer with one word.", "down", []),
    ("What is the opposite of day? Answer with one word.", "night", []),
    ("What is the opposite of big? Answer with one word.", "small", ["little"]),
    ("What is the opposite of yes? Answer with one word.", "no", []),
    ("What is the opposite of happy? Answer with one word.", "sad", ["unhappy"]),
    ("Which planet do we live on?", "Earth", []),
    ("What star is at the center of our solar system?", "Sun", []),
    ("What is the name of the natural satellite that orbits Earth?", "Moon", []),
    ("What is the chemical formula of water?", "H2O", []),
    ("What is the boiling point of water in degrees Celsius?", "100", []),
    ("What do bees make? Answer with one word.", "honey", []),
    ("Who wrote the play Romeo and Juliet?", "Shakespeare", []),
    ("Who painted the Mona Lisa?", "Leonardo", ["da Vinci"]),
    ("What language is spoken in France? Answer with one word.", "French", []),
    ("What language is mainly spoken in Germany? Answer with one word.", "German", []),
    ("What language is mainly spoken in Spain? Answer with one word.", "Spanish", []),
    ("What is the currency of Japan?", "yen", []),
    ("What is the largest ocean on Earth?", "Pacific", []),
    ("Which ocean lies between Europe and North America?", "Atlantic", []),
    ("Which is the longest river in Africa?", "Nile", []),
    ("On which continent is Egypt?", "Africa", []),
]

# ---------------------------------------------------------------------------------------------

SUMMARY_TEMPLATES = [
    "Summarize the following paragraph in two sentences.\n\n{text}",
    "Give me a one-sentence summary of this text:\n\n{text}",
    "{text}\n\nSummarize the paragraph above in three bullet points.",
    "Read this and tell me the three most important facts.\n\n{text}",
    "TL;DR this for me, please:\n\n{text}",
    "{text}\n\nWrite a short summary of this for a busy reader.",
    "Please condense the text below to about fifty words.\n\n{text}",
    "Here is a paragraph from a document.\n\n{text}\n\nWhat is its main point?",
    "Summarize for a newsletter, in a friendly tone:\n\n{text}",
    "{text}\n\nList the key numbers mentioned above and what they refer to.",
    "Create a short headline and a two-sentence summary for this text:\n\n{text}",
    "Explain the following passage in plain language, in under sixty words.\n\n{text}",
]

RAG_TEMPLATES = [
    "Question: {q}\n\nAnswer using only the documents below. If the answer is not there, say so.\n\n{ctx}",
    "{q} Use the context to answer, and quote the sentence you relied on.\n\nContext:\n{ctx}",
    "Based on the following excerpts, answer briefly: {q}\n\n{ctx}",
    "You are a support assistant. A user asks: \"{q}\"\n\nRelevant documents:\n{ctx}\n\nWrite a short, accurate reply.",
    "{ctx}\n\nUsing only the information above, answer this question: {q}",
    "Here are some retrieved passages.\n\n{ctx}\n\nQuestion: {q}\nAnswer in one or two sentences.",
    "I need a quick answer to \"{q}\" Please check these notes first:\n\n{ctx}",
    "Context documents follow.\n{ctx}\n\nQ: {q}\nA:",
]

SYSTEM_PROMPTS = [
    "You are a concise assistant. Answer in as few words as possible.",
    "You are a friendly tutor who explains things simply.",
    "You are a helpful assistant for a small business.",
    "You are an experienced software engineer who reviews code carefully.",
    "You answer questions using only the provided documents.",
]


def words(s: str) -> int:
    return len(s.split())


class Unique:
    """Collects prompts; rejects a prompt whose first `limit` characters (system prompt
    included) equal another's, i.e. duplicates and shared prefixes of `limit` or more."""

    def __init__(self, limit: int = MAX_SHARED_PREFIX):
        self.limit = limit
        self.keys: set[str] = set()

    def add(self, rec: dict) -> bool:
        key = (rec.get("system", "") + "\n" + rec["prompt"])[: self.limit]
        if key in self.keys:
            return False
        self.keys.add(key)
        return True


def shared_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def max_shared_prefix(prompts: list[str]) -> int:
    s = sorted(prompts)
    return max((shared_prefix_len(a, b) for a, b in zip(s, s[1:])), default=0)


def window(rng: random.Random, bank: dict, lo_words: int, hi_words: int,
           must: int | None = None) -> str:
    """Consecutive sentences of a bank (a few skipped), lo_words..hi_words long, holding
    sentence `must` if given. Starting points vary, so texts rarely begin alike."""
    sents = bank["sentences"]
    n = len(sents)
    for _ in range(500):
        s0 = rng.randrange(n if must is None else must + 1)
        target = rng.randint(lo_words, hi_words)
        picked: list[int] = []
        total = 0
        for idx in range(s0, n):
            if total >= target:
                break
            if idx in (must, s0) or rng.random() > 0.2:
                picked.append(idx)
                total += words(sents[idx])
        if must is not None and must not in picked:
            continue
        if lo_words <= total <= hi_words:
            return " ".join(sents[j] for j in picked)
    raise RuntimeError(f"cannot build a {lo_words}-{hi_words} word text from {bank['title']}")


def gen_short_pool(rng: random.Random) -> list[str]:
    pool = list(SHORT_QUESTIONS)
    pool += [f"What is the difference between {a} and {b}?" for a, b in DIFF_PAIRS]
    pool += [f"How do I {t}?" for t in HOW_TASKS]
    pool += [rng.choice(["In one sentence, what is {c}?", "Can you briefly explain {c}?",
                         "What is {c}, in simple words?"]).format(c=c) for c in CONCEPTS]
    pool += [rng.choice(["Give me one tip for {t}.", "What is your best advice for {t}?",
                         "Any quick tips for {t}?"]).format(t=t) for t in TIP_TOPICS]
    pool = [q for q in dict.fromkeys(pool) if 5 <= words(q) <= 20]
    rng.shuffle(pool)
    return pool


def fill(rng: random.Random, template: str) -> str:
    out = template
    for key, values in SLOTS.items():
        token = "{" + key + "}"
        while token in out:
            out = out.replace(token, rng.choice(values), 1)
    return out


def gen_chat_mix(rng: random.Random, short_pool: list[str]) -> list[dict]:
    u = Unique()
    out: list[tuple[str, dict]] = []

    def add(kind: str, prompt: str, system: str | None = None) -> bool:
        rec = {"prompt": prompt}
        if system:
            rec["system"] = system
        if not u.add(rec):
            return False
        out.append((kind, rec))
        return True

    # short Q&A: 110
    for q in short_pool[:110]:
        add("qa", q, rng.choice(SYSTEM_PROMPTS[:3]) if rng.random() < 0.1 else None)

    # instructions: 100
    n = 0
    while n < 100:
        if add("instr", fill(rng, rng.choice(INSTRUCTION_TEMPLATES)),
               SYSTEM_PROMPTS[2] if rng.random() < 0.08 else None):
            n += 1

    # summarization, 100-300 words: 90
    n = 0
    while n < 90:
        bank = rng.choice(BANKS)
        text = window(rng, bank, 100, 300)
        if add("sum", rng.choice(SUMMARY_TEMPLATES).format(text=text)):
            n += 1

    # code: 90 (snippet questions, write-a-function tasks, concept questions)
    n = 0
    for q in CODE_CONCEPT_QS:
        if add("code", q, SYSTEM_PROMPTS[3] if rng.random() < 0.15 else None):
            n += 1
    while n < 90:
        if rng.random() < 0.55:
            lang, code = rng.choice(CODE_SNIPPETS)
            prompt = rng.choice(CODE_QUESTIONS).format(lang=lang, code=code)
        else:
            lang = rng.choice(CODE_LANGS)
            task = rng.choice(CODE_TASKS)
            prompt = rng.choice([
                f"Write a {lang} function that {task}.",
                f"In {lang}, how would I write a function that {task}?",
                f"Show me {lang} code that {task}, with a short explanation.",
                f"I need a small {lang} helper that {task}. Include an example call.",
            ])
        if add("code", prompt):
            n += 1

    # RAG, 200-500 word context: 90
    n = 0
    while n < 90:
        bank = rng.choice(BANKS)
        q, must = rng.choice(bank["questions"])
        primary = window(rng, bank, 120, 330, must=must)
        docs = [f"[Doc 1: {bank['title']}]\n{primary}"]
        extra = ""
        if rng.random() < 0.6:  # a distractor document, as retrieval often returns
            other = rng.choice([b for b in BANKS if b is not bank])
            extra = window(rng, other, 50, 140)
            docs.append(f"[Doc 2: {other['title']}]\n{extra}")
            rng.shuffle(docs)
            docs = [d.replace("[Doc 1:", "[Doc #").replace("[Doc 2:", "[Doc #") for d in docs]
            docs = [d.replace("[Doc #", f"[Doc {i + 1}:", 1) for i, d in enumerate(docs)]
        ctx = "\n\n".join(docs)
        body_words = words(primary) + (words(extra) if len(docs) > 1 else 0)
        if not 200 <= body_words <= 500:
            continue
        if add("rag", rng.choice(RAG_TEMPLATES).format(q=q, ctx=ctx),
               SYSTEM_PROMPTS[4] if rng.random() < 0.15 else None):
            n += 1

    rng.shuffle(out)
    recs = []
    for i, (kind, rec) in enumerate(out, 1):
        recs.append({"id": f"mix-{i:04d}-{kind}", **rec})
    return recs


def gen_short_qa(short_pool: list[str]) -> list[dict]:
    # The first 110 questions of the pool are also in chat-mix; this file uses all of them.
    return [{"id": f"qa-{i:04d}", "prompt": q} for i, q in enumerate(short_pool, 1)]


def gen_known() -> list[dict]:
    out = []
    for i, (q, a, accept) in enumerate(KNOWN, 1):
        out.append({"id": f"known-{i:03d}", "prompt": q, "answer": a, "accept": [a, *accept]})
    return out


def dump(recs: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "prompts")
    ap.add_argument("--check", action="store_true", help="exit 1 if the files on disk differ")
    args = ap.parse_args()

    rng = random.Random(SEED)
    short_pool = gen_short_pool(rng)
    files = {
        "chat-mix.jsonl": gen_chat_mix(rng, short_pool),
        "short-qa.jsonl": gen_short_qa(short_pool),
        "known-answers.jsonl": gen_known(),
    }

    # invariants
    for name, recs in files.items():
        prompts = [r.get("system", "") + "\n" + r["prompt"] for r in recs]
        assert len(set(prompts)) == len(prompts), f"{name}: duplicate prompts"
        assert len({r["id"] for r in recs}) == len(recs), f"{name}: duplicate ids"
    assert len(files["chat-mix.jsonl"]) >= 400
    assert len(files["short-qa.jsonl"]) >= 200
    assert len(files["known-answers.jsonl"]) >= 30
    assert all(5 <= words(r["prompt"]) <= 20 for r in files["short-qa.jsonl"])
    mix = files["chat-mix.jsonl"]
    longest = max_shared_prefix([r.get("system", "") + "\n" + r["prompt"] for r in mix])
    assert longest < MAX_SHARED_PREFIX, f"chat-mix: two prompts share a {longest}-character prefix"

    stale = False
    args.out.mkdir(parents=True, exist_ok=True)
    for name, recs in files.items():
        path = args.out / name
        text = dump(recs)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{path}: out of date (run scripts/gen_prompts.py)", file=sys.stderr)
                stale = True
            continue
        path.write_text(text, encoding="utf-8")
    kinds: dict[str, int] = {}
    for r in mix:
        k = r["id"].rsplit("-", 1)[1]
        kinds[k] = kinds.get(k, 0) + 1
    print(f"chat-mix: {len(mix)} prompts {kinds}, longest shared prefix {longest} chars; "
          f"short-qa: {len(files['short-qa.jsonl'])}; known-answers: {len(files['known-answers.jsonl'])}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
