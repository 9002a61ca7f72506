// Packing documents into sequences, and the attention each recipe's image attention gives them.
import XCTest
@testable import Fusion

final class SequencePackingTests: XCTestCase {
    let vocabulary = testVocabulary(imageCodes: 6)

    /// Document 0: caption [1, 2] then a 2-code image; document 1: text [3].
    func packedExample() throws -> PackedBatch {
        let documents = [Document([.text([1, 2]), .image(.codes([4, 5]))]), Document([.text([3])])]
        return try SequenceLayout(vocabulary: vocabulary).pack(documents, length: 12)
    }

    func testLayoutOfTwoDocumentsInOneRow() throws {
        let batch = try packedExample()
        let (bos, eos, boi, eoi, pad) = (vocabulary.bos, vocabulary.eos, vocabulary.boi, vocabulary.eoi, vocabulary.pad)
        XCTAssertEqual(batch.rows, 1)
        XCTAssertEqual(batch.ids, [bos, 1, 2, boi, 24, 25, eoi, eos, bos, 3, eos, pad])
        XCTAssertEqual(batch.positions, [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 0])
        XCTAssertEqual(batch.documentIDs, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, -1])
        XCTAssertEqual(batch.imageIndex, [-1, -1, -1, -1, 0, 0, -1, -1, -1, -1, -1, -1])
        XCTAssertEqual(batch.images.count, 1)
        XCTAssertEqual(batch.images[0].start, 4)
        XCTAssertFalse(batch.images[0].comesFirst)
        // Next-token targets stop at each document's end and skip padding.
        XCTAssertEqual(batch.nextTokenTargets, [1, 2, boi, 24, 25, eoi, eos, -1, 3, eos, -1, -1])
    }

    func testCausalImageAttention() throws {
        // Chameleon: causal everywhere, nothing across documents, padding sees only itself.
        let mask = try packedExample().masks(imageAttention: .causal)[0]
        XCTAssertEqual(mask.picture, """
            x...........
            xx..........
            xxx.........
            xxxx........
            xxxxx.......
            xxxxxx......
            xxxxxxx.....
            xxxxxxxx....
            ........x...
            ........xx..
            ........xxx.
            ...........x
            """)
    }

    func testBidirectionalImageAttention() throws {
        // Show-o and Transfusion: the two image positions (4, 5) also see each other; BOI/EOI stay causal.
        let mask = try packedExample().masks(imageAttention: .bidirectional)[0]
        XCTAssertEqual(mask.picture, """
            x...........
            xx..........
            xxx.........
            xxxx........
            xxxxxx......
            xxxxxx......
            xxxxxxx.....
            xxxxxxxx....
            ........x...
            ........xx..
            ........xxx.
            ...........x
            """)
    }

    func testDocumentThatDoesNotFitStartsTheNextRow() throws {
        let documents = [Document([.text([1, 2, 3])]), Document([.text([4, 5, 6])])]
        let batch = try SequenceLayout(vocabulary: vocabulary).pack(documents, length: 6)
        XCTAssertEqual(batch.rows, 2)
        XCTAssertEqual(batch.documentIDs, [0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, -1])
        XCTAssertThrowsError(try SequenceLayout(vocabulary: vocabulary).pack(documents, length: 6, rows: 1))
        let padded = try SequenceLayout(vocabulary: vocabulary).pack(documents, length: 6, rows: 3)
        XCTAssertEqual(padded.rows, 3)
        XCTAssertEqual(Array(padded.documentIDs[12...]), Array(repeating: -1, count: 6))
    }

    func testTooLongDocumentIsRefusedWithBothLengths() {
        let document = Document([.text(Array(repeating: 1, count: 20))])
        XCTAssertThrowsError(try SequenceLayout(vocabulary: vocabulary).pack([document], length: 16)) { error in
            XCTAssertEqual(error as? SequenceLengthError, SequenceLengthError(documentLength: 22, contextLength: 16))
            XCTAssert("\(error)".contains("22") && "\(error)".contains("16"), "\(error)")
        }
    }

    func testLatentImagesTakeOnePositionPerPatch() throws {
        let latents = Tensor(zeros: [2, 4, 4])
        let layout = SequenceLayout(vocabulary: testVocabulary(imageCodes: 0), patchSize: 2)
        let batch = try layout.pack([Document([.image(.latents(latents)), .text([1])])], length: 10)
        XCTAssertEqual(batch.images[0].count, 4)
        XCTAssertTrue(batch.images[0].comesFirst)
        XCTAssertEqual(batch.imageIndex, [-1, -1, 0, 0, 0, 0, -1, -1, -1, -1])
    }

    func testTaskTokensDoNotCountAsTextBeforeAnImage() throws {
        // Show-o writes "BOS MMU BOI image EOI caption EOS": still an image-first (understanding) document.
        let document = Document([.text([vocabulary.mmu]), .image(.codes([1, 2])), .text([3])])
        let batch = try SequenceLayout(vocabulary: vocabulary).pack([document], length: 10)
        XCTAssertTrue(batch.images[0].comesFirst)
        let generation = Document([.text([vocabulary.t2i, 4]), .image(.codes([1, 2]))])
        XCTAssertFalse(try SequenceLayout(vocabulary: vocabulary).pack([generation], length: 10).images[0].comesFirst)
    }
}
