import XCTest
@testable import Fusion

final class TensorTests: XCTestCase {
    func testShapeAndValues() {
        let t = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(t.count, 6)
        XCTAssertEqual(t[1, 2], 6)
    }
}
